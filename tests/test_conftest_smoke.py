import psycopg


def test_make_database_gives_an_empty_writable_database(make_database, postgres_bin_dir):
    url = make_database()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert (postgres_bin_dir / "pg_dump").exists()
