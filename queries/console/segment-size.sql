-- The journeys page: how many users a segment holds in the analytics log. Parameters as step-rates.sql.
SELECT COUNT(*) FROM subjects
WHERE (CAST(? AS VARCHAR) IS NULL OR role = ?)
  AND (CAST(? AS VARCHAR) IS NULL OR industry = ?)
  AND (CAST(? AS VARCHAR) IS NULL OR plan = ?)
