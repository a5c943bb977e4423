"""The private PostgreSQL cluster the drills rely on: it starts, keeps what it
committed across a crash, and leaves nothing running."""

from __future__ import annotations

import psycopg

from simulator import postgres


def test_committed_rows_survive_an_immediate_shutdown(pg_cluster):
    url = postgres.create_database(pg_cluster.url(), "drill")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (n integer PRIMARY KEY)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 100)")
    pid = pg_cluster.proc.pid
    pg_cluster.restart(crash=True)
    assert pg_cluster.proc.pid != pid
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 100
    assert "database system was interrupted" in pg_cluster.log_path.read_text() or \
        "not properly shut down" in pg_cluster.log_path.read_text()


def test_destroy_leaves_no_server():
    cluster = postgres.PostgresCluster().start()
    proc, where = cluster.proc, cluster.dir
    cluster.destroy()
    assert proc.poll() is not None
    assert not where.exists()


def test_pg_url_is_a_fresh_database(pg_url):
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT count(*) FROM information_schema.tables "
                              "WHERE table_schema = 'public'").fetchone()[0]
    assert tables == 0
