-- Empties the database before a backup is replayed, inside the restore's one transaction,
-- so that objects created after the backup (a migration's new table...) are gone too:
-- pg_restore --clean only drops what the dump itself contains.
-- Every schema but the system ones is dropped. The dump does not recreate the schema
-- "public" (pg_dump leaves it out since PostgreSQL 15), so public is recreated here with its
-- owner, privileges and comment as they were.
DO $prelude$
DECLARE
    schema_name name;
    public_owner name;
    public_acl aclitem[];
    public_comment text;
    grant_row record;
BEGIN
    FOR schema_name IN
        SELECT nspname FROM pg_catalog.pg_namespace
        WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema' AND nspname <> 'public'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;

    SELECT pg_catalog.pg_get_userbyid(nspowner), nspacl, pg_catalog.obj_description(oid, 'pg_namespace')
        INTO public_owner, public_acl, public_comment
        FROM pg_catalog.pg_namespace WHERE nspname = 'public';
    IF FOUND THEN
        DROP SCHEMA public CASCADE;
        CREATE SCHEMA public;
        EXECUTE format('ALTER SCHEMA public OWNER TO %I', public_owner);
        IF public_acl IS NOT NULL THEN
            REVOKE ALL ON SCHEMA public FROM PUBLIC;
            FOR grant_row IN SELECT * FROM pg_catalog.aclexplode(public_acl) LOOP
                EXECUTE format(
                    'GRANT %s ON SCHEMA public TO %s%s',
                    grant_row.privilege_type,
                    CASE WHEN grant_row.grantee = 0 THEN 'PUBLIC'
                         ELSE quote_ident(pg_catalog.pg_get_userbyid(grant_row.grantee)) END,
                    CASE WHEN grant_row.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
        END IF;
        EXECUTE format('COMMENT ON SCHEMA public IS %L', public_comment);
    END IF;
END
$prelude$;
