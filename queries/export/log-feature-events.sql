-- Which features each subject used (the parameter: the FEATURE_USED code), and when first, by the service's
-- record time (epoch seconds), from the analytics log.
SELECT subject, feature, MIN(recorded_s) AS first_s
FROM events
WHERE type = ? AND feature IS NOT NULL
GROUP BY subject, feature
