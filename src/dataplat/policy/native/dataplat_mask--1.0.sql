-- dataplat_mask 1.0: the C masks; dataplat's policy views reach them through the SQL
-- wrappers in schema dataplat_policy. Only the extension's owner (the warehouse admin
-- that applies the policies) may call them and grant them on.
\echo Use "CREATE EXTENSION dataplat_mask" to load this file. \quit

CREATE FUNCTION @extschema@.keep(v text, keep_first integer, keep_last integer, min_hidden integer)
RETURNS text AS 'MODULE_PATHNAME', 'dataplat_mask_keep' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@.email(v text)
RETURNS text AS 'MODULE_PATHNAME', 'dataplat_mask_email' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@.token(pads bytea, v text)
RETURNS text AS 'MODULE_PATHNAME', 'dataplat_mask_token' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@.hash(pads bytea, v text)
RETURNS text AS 'MODULE_PATHNAME', 'dataplat_mask_hash' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO @extowner@ WITH GRANT OPTION;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA @extschema@ TO @extowner@ WITH GRANT OPTION;
