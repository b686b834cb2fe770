-- query: branch_dashboard
-- description: A branch's dashboard: customers, AUM, deposits and investments per segment,
--   with the number of new customers and of those at risk of churning.
-- weight: 1
-- needs: {bench}.aum_snapshot and {bench}.lifecycle_stage with indexes on branch_id / customer_id
\set br random(1, :branches)
SELECT a.segment,
       COUNT(*) AS customers,
       SUM(a.aum) AS aum,
       AVG(a.aum) AS avg_aum,
       SUM(a.deposits) AS deposits,
       SUM(a.investments) AS investments,
       COUNT(*) FILTER (WHERE s.stage = 'new') AS new_customers,
       COUNT(*) FILTER (WHERE s.stage = 'churn_risk') AS churn_risk
FROM {bench}.aum_snapshot AS a
JOIN {bench}.lifecycle_stage AS s ON s.customer_id = a.customer_id
WHERE a.branch_id = :br
GROUP BY a.segment
ORDER BY a.segment;
