-- The journeys page: for each step, how many users of a segment completed it, and how many of those activated.
-- Runs on the analytics log (service/analytics/log.py). Parameters, in order: role, role, industry, industry,
-- plan, plan (local IDs, as the log keeps them; NULL for any).
-- Rows: step, completers, completers who activated (at any time).
WITH segment AS (
    SELECT subject FROM subjects
    WHERE (CAST(? AS VARCHAR) IS NULL OR role = ?)
      AND (CAST(? AS VARCHAR) IS NULL OR industry = ?)
      AND (CAST(? AS VARCHAR) IS NULL OR plan = ?)
),
activated AS (SELECT DISTINCT subject FROM events WHERE type = 'ACTIVATED')
SELECT e.step,
       COUNT(DISTINCT e.subject) AS completers,
       COUNT(DISTINCT CASE WHEN a.subject IS NOT NULL THEN e.subject END) AS activated
FROM events e
JOIN segment s ON s.subject = e.subject
LEFT JOIN activated a ON a.subject = e.subject
WHERE e.type = 'STEP_COMPLETED' AND e.step IS NOT NULL
GROUP BY e.step
ORDER BY e.step
