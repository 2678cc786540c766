-- Which steps each subject completed or dismissed (the parameters: the two event type codes), from the analytics log.
SELECT DISTINCT subject, type, step
FROM events
WHERE type IN (?, ?) AND step IS NOT NULL
