-- The consent page: how many consent records were recorded each day (UTC, by the service's clock), by purpose
-- (local ID) and by grant or withdrawal, from the analytics log's consents table. No parameters. Rows: day (days
-- since 1970-01-01, UTC), purpose, granted, records; oldest day first. Erased users' records and those retention
-- removed are gone, so these are the records held now: the counts queries/console/consent-by-day.rq gives over
-- SPARQL, without a scan of the consent graph.
SELECT CAST(floor(recorded_s / 86400) AS BIGINT) AS day, purpose, granted, COUNT(*) AS records
FROM consents
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
