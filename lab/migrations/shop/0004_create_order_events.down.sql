DROP TRIGGER order_events_notify ON order_events;
DROP FUNCTION order_events_notify();
DROP TABLE order_events;
