"""runs_dispatch in one round trip: the agent's row lock, then the pick and the sends, in a
server-side function. Called outside a transaction (a post, once committed) it holds the lock
only while Postgres runs it, never while a Python thread waits for the GIL between two
statements: with a hundred posts at once, that wait was most of a post's time."""

from django.db import migrations

# A VOLATILE function's statements each take a fresh snapshot under READ COMMITTED: the pick,
# after the lock, sees what the dispatcher that held the lock before committed.
CREATE = """
CREATE OR REPLACE FUNCTION agentops_runs_dispatch(
    p_agent bigint, p_default_limit integer, p_stamp text
) RETURNS TABLE (dispatched_id uuid, dispatched_job_id varchar)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_limit integer;
BEGIN
    SELECT coalesce(a.max_concurrent_runs, p_default_limit) INTO v_limit
      FROM agentops_agent AS a WHERE a.id = p_agent FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH in_flight AS (
        SELECT count(*) AS n FROM agentops_run AS f
        WHERE f.agent_id = p_agent
          AND (f.status = 'running' OR (f.status = 'queued' AND f.job_id <> ''))
    ), picked AS (
        SELECT h.id FROM agentops_run AS h
        WHERE h.agent_id = p_agent AND h.status = 'queued' AND h.job_id = ''
        ORDER BY h.enqueued_at, h.created_at
        LIMIT (SELECT CASE WHEN v_limit = 0 THEN NULL ELSE greatest(v_limit - n, 0) END
               FROM in_flight)
    )
    UPDATE agentops_run AS r SET job_id = 'run-' || r.id::text || '-' || p_stamp
    FROM picked WHERE r.id = picked.id AND r.status = 'queued' AND r.job_id = ''
    RETURNING r.id, r.job_id;
END
$$;
"""

DROP = "DROP FUNCTION IF EXISTS agentops_runs_dispatch(bigint, integer, text);"


class Migration(migrations.Migration):
    dependencies = [("agentops", "0027_run_agent_in_flight")]

    operations = [migrations.RunSQL(CREATE, DROP)]
