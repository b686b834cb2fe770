-- job: audience
-- description: Tonight's audiences of the nightly campaigns running on the business date:
--   the campaign's segment (if any), marketing consent, not dormant, product suitability
--   (product risk <= customer risk), no contact by the same campaign in the last 7 days;
--   the welcome campaign goes to new customers, the win-back one to churn risks.
-- reads: campaigns, products, customers, contact_history
-- after: customer_tags, lifecycle_stage

-- @build
SELECT k.campaign_id,
       t.customer_id,
       t.branch_id,
       k.channel,
       p.product_id
FROM {bank}.campaigns AS k
LEFT JOIN {bank}.products AS p ON p.product_id = k.product_id
JOIN {bench}.customer_tags AS t
  ON (k.target_segment IS NULL OR t.segment = k.target_segment)
 AND (p.product_id IS NULL OR p.risk_level <= t.risk_level)
JOIN {bench}.lifecycle_stage AS s ON s.customer_id = t.customer_id
WHERE k.trigger = 'nightly'
  AND k.status = 'active'
  AND {as_of} BETWEEN k.start_date AND k.end_date
  AND t.marketing_consent
  AND NOT t.dormant
  AND (k.code <> 'NT-NEW-WELCOME' OR s.stage = 'new')
  AND (k.code <> 'NT-CHURN-WINBACK' OR s.stage = 'churn_risk')
  AND NOT EXISTS (
      SELECT 1 FROM {bank}.contact_history AS h
      WHERE h.customer_id = t.customer_id
        AND h.campaign_id = k.campaign_id
        AND h.ts >= {as_of_ts} - INTERVAL '7 days'
  )

-- @check consent_and_not_dormant
SELECT a.campaign_id, a.customer_id
FROM {bench}.audience AS a
JOIN {bank}.customers AS c ON c.customer_id = a.customer_id
WHERE NOT c.marketing_consent OR c.status = 'dormant'
LIMIT 5

-- @check suitability
SELECT a.campaign_id, a.customer_id, p.risk_level AS product_risk, c.risk_level AS customer_risk
FROM {bench}.audience AS a
JOIN {bank}.customers AS c ON c.customer_id = a.customer_id
JOIN {bank}.products AS p ON p.product_id = a.product_id
WHERE p.risk_level > c.risk_level
LIMIT 5

-- @check frequency_cap_7d
SELECT a.campaign_id, a.customer_id
FROM {bench}.audience AS a
JOIN {bank}.contact_history AS h
  ON h.customer_id = a.customer_id AND h.campaign_id = a.campaign_id
WHERE h.ts >= {as_of_ts} - INTERVAL '7 days'
LIMIT 5

-- @check one_row_per_campaign_and_customer
SELECT campaign_id, customer_id, COUNT(*) AS n
FROM {bench}.audience
GROUP BY campaign_id, customer_id
HAVING COUNT(*) > 1
LIMIT 5
