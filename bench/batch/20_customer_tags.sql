-- job: customer_tags
-- description: Customer tags for audience selection: AUM tier, age band, digital activity
--   (mobile-app transactions in the last 30 days), risk level and consent.
-- reads: customers, transactions
-- after: aum_snapshot

-- @build
SELECT c.customer_id,
       c.branch_id,
       c.segment,
       CASE WHEN a.aum < 50000 THEN 'T1'
            WHEN a.aum < 500000 THEN 'T2'
            WHEN a.aum < 6000000 THEN 'T3'
            ELSE 'T4' END AS aum_tier,
       CASE WHEN c.birth_date > {as_of} - INTERVAL '30 years' THEN 'under_30'
            WHEN c.birth_date > {as_of} - INTERVAL '45 years' THEN '30_44'
            WHEN c.birth_date > {as_of} - INTERVAL '60 years' THEN '45_59'
            ELSE '60_plus' END AS age_band,
       COALESCE(t.app_txns, 0) > 0 AS digital_active,
       c.risk_level,
       c.marketing_consent,
       c.status = 'dormant' AS dormant
FROM {bank}.customers AS c
JOIN {bench}.aum_snapshot AS a ON a.customer_id = c.customer_id
LEFT JOIN (
    SELECT customer_id, COUNT(*) AS app_txns
    FROM {bank}.transactions
    WHERE channel = 'mobile_app' AND ts >= {as_of_ts} - INTERVAL '30 days'
    GROUP BY customer_id
) AS t ON t.customer_id = c.customer_id

-- @check one_row_per_customer
SELECT s.n AS tag_rows, s.distinct_customers, c.n AS customers
FROM (SELECT COUNT(*) AS n, COUNT(DISTINCT customer_id) AS distinct_customers FROM {bench}.customer_tags) AS s,
     (SELECT COUNT(*) AS n FROM {bank}.customers) AS c
WHERE s.n <> c.n OR s.distinct_customers <> c.n

-- @check aum_tier_matches_snapshot
SELECT t.customer_id, t.aum_tier, a.aum
FROM {bench}.customer_tags AS t
JOIN {bench}.aum_snapshot AS a ON a.customer_id = t.customer_id
WHERE NOT ((t.aum_tier = 'T1' AND a.aum < 50000)
        OR (t.aum_tier = 'T2' AND a.aum >= 50000 AND a.aum < 500000)
        OR (t.aum_tier = 'T3' AND a.aum >= 500000 AND a.aum < 6000000)
        OR (t.aum_tier = 'T4' AND a.aum >= 6000000))
LIMIT 5

-- @check no_missing_tags
SELECT customer_id
FROM {bench}.customer_tags
WHERE aum_tier IS NULL OR age_band IS NULL OR digital_active IS NULL OR segment IS NULL
LIMIT 5
