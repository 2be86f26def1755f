-- The lab's `shop` database (run by lab/host-init.sh as user lab on a fresh db host).
-- Deterministic: the same rows every time, so tests and drills can measure data loss exactly.
--   orders: 1000 rows, wallet: 100 rows.
BEGIN;

CREATE TABLE orders (
    id           serial PRIMARY KEY,
    customer     text        NOT NULL,
    amount_cents integer     NOT NULL CHECK (amount_cents > 0),
    created_at   timestamptz NOT NULL
);

INSERT INTO orders (customer, amount_cents, created_at)
SELECT 'customer-' || lpad(((g * 37) % 100 + 1)::text, 3, '0'),
       (g * 7919) % 99900 + 100,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '37 minutes'
FROM generate_series(1, 1000) AS g
ORDER BY g;

CREATE INDEX orders_customer_idx ON orders (customer);

CREATE TABLE wallet (
    id            serial PRIMARY KEY,
    owner         text   NOT NULL UNIQUE,
    balance_cents bigint NOT NULL CHECK (balance_cents >= 0)
);

INSERT INTO wallet (owner, balance_cents)
SELECT 'customer-' || lpad(g::text, 3, '0'),
       (g * 104729) % 500000
FROM generate_series(1, 100) AS g
ORDER BY g;

COMMIT;

ANALYZE orders;
ANALYZE wallet;
