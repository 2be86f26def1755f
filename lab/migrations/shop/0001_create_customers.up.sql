-- Customers get a table of their own (orders and wallet still name them by text).
CREATE TABLE customers (
    id         bigserial PRIMARY KEY,
    email      text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
