"""A film-rental schema shaped like the public sample databases the sampler was tried on (issue 13).

What it has that the Makapix schemas lack: sequences used by ``DEFAULT nextval()`` but not owned by
their column, classic ``INHERITS`` partitions of ``payment`` (with rows in the parent too), people's
names, addresses and phone numbers in clear, integer ``address_id`` keys and boolean flags.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sampling import plan, run, verify
from sampling.config import parse_config

Rows = Callable[[str, str], list[tuple[Any, ...]]]

SCHEMA = """
CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17');
CREATE SEQUENCE actor_actor_id_seq;
CREATE TABLE actor (actor_id int DEFAULT nextval('actor_actor_id_seq') PRIMARY KEY, first_name text NOT NULL,
    last_name text NOT NULL, last_update timestamptz NOT NULL DEFAULT now());
CREATE SEQUENCE country_country_id_seq;
CREATE TABLE country (country_id int DEFAULT nextval('country_country_id_seq') PRIMARY KEY, country text NOT NULL);
CREATE SEQUENCE city_city_id_seq;
CREATE TABLE city (city_id int DEFAULT nextval('city_city_id_seq') PRIMARY KEY, city text NOT NULL,
    country_id int NOT NULL REFERENCES country);
CREATE SEQUENCE address_address_id_seq;
CREATE TABLE address (address_id int DEFAULT nextval('address_address_id_seq') PRIMARY KEY, address text NOT NULL,
    address2 text, district text NOT NULL, city_id int NOT NULL REFERENCES city, postal_code text, phone text NOT NULL);
CREATE SEQUENCE language_language_id_seq;
CREATE TABLE language (language_id int DEFAULT nextval('language_language_id_seq') PRIMARY KEY, name char(20) NOT NULL);
CREATE SEQUENCE category_category_id_seq;
CREATE TABLE category (category_id int DEFAULT nextval('category_category_id_seq') PRIMARY KEY, name text NOT NULL);
CREATE SEQUENCE film_film_id_seq;
CREATE TABLE film (film_id int DEFAULT nextval('film_film_id_seq') PRIMARY KEY, title text NOT NULL,
    description text, release_year int, language_id int NOT NULL REFERENCES language,
    rental_rate numeric(4,2) NOT NULL DEFAULT 4.99, rating mpaa_rating DEFAULT 'G', special_features text[],
    fulltext tsvector);
CREATE TABLE film_actor (actor_id int NOT NULL REFERENCES actor, film_id int NOT NULL REFERENCES film,
    PRIMARY KEY (actor_id, film_id));
CREATE TABLE film_category (film_id int NOT NULL REFERENCES film, category_id int NOT NULL REFERENCES category,
    PRIMARY KEY (film_id, category_id));
CREATE SEQUENCE staff_staff_id_seq;
CREATE TABLE staff (staff_id int DEFAULT nextval('staff_staff_id_seq') PRIMARY KEY, first_name text NOT NULL,
    last_name text NOT NULL, address_id int NOT NULL REFERENCES address, email text, store_id int NOT NULL,
    active boolean NOT NULL DEFAULT true, username text NOT NULL, password text, picture bytea);
CREATE SEQUENCE store_store_id_seq;
CREATE TABLE store (store_id int DEFAULT nextval('store_store_id_seq') PRIMARY KEY,
    manager_staff_id int NOT NULL REFERENCES staff, address_id int NOT NULL REFERENCES address);
ALTER TABLE staff ADD FOREIGN KEY (store_id) REFERENCES store;
CREATE SEQUENCE customer_customer_id_seq;
CREATE TABLE customer (customer_id int DEFAULT nextval('customer_customer_id_seq') PRIMARY KEY,
    store_id int NOT NULL REFERENCES store, first_name text NOT NULL, last_name text NOT NULL, email text,
    address_id int NOT NULL REFERENCES address, activebool boolean NOT NULL DEFAULT true,
    create_date date NOT NULL DEFAULT current_date, active int);
CREATE SEQUENCE inventory_inventory_id_seq;
CREATE TABLE inventory (inventory_id int DEFAULT nextval('inventory_inventory_id_seq') PRIMARY KEY,
    film_id int NOT NULL REFERENCES film, store_id int NOT NULL REFERENCES store);
CREATE SEQUENCE rental_rental_id_seq;
CREATE TABLE rental (rental_id int DEFAULT nextval('rental_rental_id_seq') PRIMARY KEY,
    rental_date timestamptz NOT NULL, inventory_id int NOT NULL REFERENCES inventory,
    customer_id int NOT NULL REFERENCES customer, return_date timestamptz, staff_id int NOT NULL REFERENCES staff);
CREATE SEQUENCE payment_payment_id_seq;
CREATE TABLE payment (payment_id int DEFAULT nextval('payment_payment_id_seq') PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customer, staff_id int NOT NULL REFERENCES staff,
    rental_id int NOT NULL REFERENCES rental, amount numeric(5,2) NOT NULL, payment_date timestamptz NOT NULL);
CREATE TABLE payment_p2007_01 (CHECK (payment_date < '2007-02-01'),
    FOREIGN KEY (customer_id) REFERENCES customer, FOREIGN KEY (staff_id) REFERENCES staff,
    FOREIGN KEY (rental_id) REFERENCES rental) INHERITS (payment);
CREATE TABLE payment_p2007_02 (CHECK (payment_date >= '2007-02-01'),
    FOREIGN KEY (customer_id) REFERENCES customer, FOREIGN KEY (staff_id) REFERENCES staff,
    FOREIGN KEY (rental_id) REFERENCES rental) INHERITS (payment);
"""

# Rows made through the defaults, so every sequence is where production left it.
DATA = """
SET session_replication_role = replica;
INSERT INTO actor (first_name, last_name) SELECT 'Actor' || g, 'Surname' || g FROM generate_series(1, 20) g;
INSERT INTO country (country) VALUES ('Freedonia'), ('Sylvania');
INSERT INTO city (city, country_id) SELECT 'City' || g, 1 + g % 2 FROM generate_series(1, 10) g;
INSERT INTO address (address, district, city_id, postal_code, phone)
    SELECT g || ' Main Street', 'District', 1 + g % 10, lpad(g::text, 5, '0'), '+1555' || g FROM generate_series(1, 60) g;
INSERT INTO language (name) VALUES ('English'), ('Italian');
INSERT INTO category (name) VALUES ('Action'), ('Comedy'), ('Drama');
INSERT INTO film (title, language_id) SELECT 'Film ' || g, 1 + g % 2 FROM generate_series(1, 30) g;
INSERT INTO film_actor SELECT 1 + g % 20, g FROM generate_series(1, 30) g;
INSERT INTO film_category SELECT g, 1 + g % 3 FROM generate_series(1, 30) g;
INSERT INTO staff (first_name, last_name, address_id, email, store_id, username, password)
    VALUES ('Mike', 'Hillyer', 1, 'mike@store.example', 1, 'mike', 'secret-hash-1'),
           ('Jon', 'Stephens', 2, 'jon@store.example', 2, 'jon', 'secret-hash-2');
INSERT INTO store (manager_staff_id, address_id) VALUES (1, 3), (2, 4);
INSERT INTO customer (store_id, first_name, last_name, email, address_id, active)
    SELECT 1 + g % 2, 'First' || g, 'Last' || g, 'c' || g || '@mail.example', 4 + g, 1 FROM generate_series(1, 50) g;
INSERT INTO inventory (film_id, store_id) SELECT 1 + g % 30, 1 + g % 2 FROM generate_series(1, 80) g;
INSERT INTO rental (rental_date, inventory_id, customer_id, staff_id)
    SELECT '2007-01-01'::timestamptz + g * interval '1 hour', 1 + g % 80, 1 + g % 50, 1 + g % 2
    FROM generate_series(1, 200) g;
INSERT INTO payment_p2007_01 (customer_id, staff_id, rental_id, amount, payment_date)
    SELECT 1 + g % 50, 1 + g % 2, g, 2.99, '2007-01-15' FROM generate_series(1, 100) g;
INSERT INTO payment_p2007_02 (customer_id, staff_id, rental_id, amount, payment_date)
    SELECT 1 + g % 50, 1 + g % 2, g, 4.99, '2007-02-15' FROM generate_series(101, 200) g;
INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date) VALUES (1, 1, 1, 0.99, '2006-12-31');
RESET session_replication_role;
"""

CONFIG: dict[str, Any] = {
    "seed": 3,
    "roots": [{"table": "customer", "fraction": 0.5}],
    "tables": {
        "customer": {"columns": {"first_name": "pseudonym", "last_name": "pseudonym", "email": "email"}},
        "staff": {
            "columns": {
                "first_name": "pseudonym",
                "last_name": "pseudonym",
                "email": "email",
                "username": "pseudonym",
                "password": {"rule": "password", "value": "dev"},
            }
        },
        "address": {
            "columns": {"address": "redact", "address2": "null", "postal_code": "null", "phone": "redact"}
        },
        "actor": {"copy": "all", "columns": {"first_name": "keep", "last_name": "keep"}},
        **{
            table: {"copy": "all"}
            for table in ("film", "film_actor", "film_category", "language", "category")
        },
        **{table: {"copy": "all"} for table in ("country", "city")},
    },
}


@pytest.fixture
def film_rental(make_database: Callable[[], str], execute: Callable[[str, str], None]) -> tuple[str, str]:
    source, target = make_database(), make_database()
    execute(source, SCHEMA + DATA)
    execute(target, SCHEMA)
    return source, target


def test_the_guard_asks_for_the_personal_columns_only(
    film_rental: tuple[str, str], anonymisation_key: str
) -> None:
    """14 decisions: names, contact details and credentials; no address_id, activebool or create_date."""
    source, _ = film_rental
    bare = parse_config({"roots": [{"table": "customer", "fraction": 0.5}]})
    assert plan(bare, source).sensitive_without_rule == [
        "actor.first_name",
        "actor.last_name",
        "address.address",
        "address.address2",
        "address.postal_code",
        "address.phone",
        "customer.first_name",
        "customer.last_name",
        "customer.email",
        "staff.first_name",
        "staff.last_name",
        "staff.email",
        "staff.username",
        "staff.password",
    ]


def test_a_film_rental_sample_is_consistent_and_writable(
    film_rental: tuple[str, str],
    execute: Callable[[str, str], None],
    rows: Rows,
    anonymisation_key: str,
) -> None:
    source, target = film_rental
    config = parse_config(CONFIG)
    summary = run(config, source, target)
    assert 10 <= summary.tables["public.customer"].rows <= 40
    report = verify(config, source, target)
    assert report.ok, report.problems
    assert report.checked_sequences == 13  # every DEFAULT nextval() sequence; none is OWNED BY its column
    # Inherited partitions: each payment once, in the table it lives in.
    assert rows(target, "SELECT count(*) = count(DISTINCT payment_id) FROM payment") == [(True,)]
    assert rows(target, "SELECT count(*) FROM ONLY payment WHERE payment_date >= '2007-01-01'") == [(0,)]
    # The first inserts in development succeed (they failed with duplicate keys).
    execute(
        target,
        """
        INSERT INTO actor (first_name, last_name) VALUES ('New', 'Actor');
        INSERT INTO address (address, district, city_id, phone) VALUES ('x', 'y', 1, 'z');
        INSERT INTO customer (store_id, first_name, last_name, address_id)
            SELECT store_id, 'n', 'n', currval('address_address_id_seq') FROM store LIMIT 1;
        INSERT INTO payment_p2007_02 (customer_id, staff_id, rental_id, amount, payment_date)
            SELECT customer_id, staff_id, rental_id, 1, '2007-02-20' FROM rental LIMIT 1;
        """,
    )
    assert rows(target, "SELECT count(*) FROM customer WHERE email LIKE '%@mail.example'") == [(0,)]
