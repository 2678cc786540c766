-- Which subjects activated or converted (the parameters: the two event type codes), from the analytics log.
SELECT DISTINCT subject, type
FROM events
WHERE type IN (?, ?)
