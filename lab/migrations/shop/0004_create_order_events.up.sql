CREATE TABLE order_events (
    id         bigserial PRIMARY KEY,
    order_id   integer     NOT NULL REFERENCES orders (id),
    kind       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_events_order_idx ON order_events (order_id);
CREATE FUNCTION order_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('order_events', NEW.order_id::text);
    RETURN NEW;
END;
$$;
CREATE TRIGGER order_events_notify AFTER INSERT ON order_events
    FOR EACH ROW EXECUTE FUNCTION order_events_notify();
