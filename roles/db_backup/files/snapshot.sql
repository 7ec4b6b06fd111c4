-- Row count and an order-independent checksum (sum of per-row md5 prefixes) of every user table,
-- with the snapshot time. Run in a REPEATABLE READ transaction so all tables are read at one point.
SELECT json_build_object(
  'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00',
  'database', current_database(),
  'tables', coalesce((
    SELECT json_object_agg(t.name, json_build_object('rows', t.n, 'checksum', t.s) ORDER BY t.name)
    FROM (
      SELECT format('%I.%I', n.nspname, c.relname) AS name,
             (xpath('/row/n/text()', query_to_xml(format(
               'SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint AS n,
             coalesce((xpath('/row/s/text()', query_to_xml(format(
               'SELECT sum((''x'' || substr(md5(t::text), 1, 15))::bit(60)::bigint) AS s FROM %I.%I t',
               n.nspname, c.relname), false, true, '')))[1]::text, '0') AS s
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND n.nspname NOT LIKE 'pg_toast%' AND NOT c.relispartition
    ) t), '{}'::json)
);
