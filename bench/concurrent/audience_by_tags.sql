-- query: audience_by_tags
-- description: Audience selection in a branch by a combination of tags (segment, AUM tier,
--   age band, digital activity) among customers who consented: the first 200 and the size.
-- weight: 3
-- needs: {bench}.customer_tags (the batch job) with an index on branch_id
\set br random(1, :branches)
\set seg random(1, 3)
\set tier random(1, 3)
\set band random(1, 4)
\set dig random(0, 1)
SELECT t.customer_id, t.aum_tier, t.age_band, COUNT(*) OVER () AS audience_size
FROM {bench}.customer_tags AS t
WHERE t.branch_id = :br
  AND t.segment = (ARRAY['mass', 'affluent', 'private'])[:seg]
  AND t.aum_tier >= (ARRAY['T1', 'T2', 'T3'])[:tier]
  AND t.age_band <> (ARRAY['under_30', '30_44', '45_59', '60_plus'])[:band]
  AND t.digital_active = (:dig = 1)
  AND t.marketing_consent
  AND NOT t.dormant
ORDER BY t.customer_id
LIMIT 200;
