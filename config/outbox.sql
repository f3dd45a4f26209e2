-- outboxd's default outbox table (column preset "outboxd"). Applications INSERT one row per event in the same
-- transaction as their business change; outboxd streams the INSERTs (never UPDATEs or DELETEs) to Kafka.
--
-- Requirements: Postgres 14 or newer, wal_level = logical. outboxd creates the publication
-- (FOR TABLE public.outbox WITH (publish = 'insert')) and the pgoutput slot itself unless told not to.
-- Rows may be deleted once streamed (e.g. a periodic DELETE ... WHERE created_at < now() - interval '1 day'):
-- outboxd ignores deletes, and publish = 'insert' keeps them out of the stream altogether.

CREATE TABLE IF NOT EXISTS public.outbox (
    -- The event id: consumers use it as their idempotency key.
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Routes the event to a topic (e.g. 'order' -> outbox.event.order).
    aggregate_type text        NOT NULL,
    -- The Kafka record key: events of one aggregate stay in order on one partition.
    aggregate_id   text        NOT NULL,
    -- Names the event and its schema (e.g. 'OrderCreated').
    event_type     text        NOT NULL,
    -- The event body as JSON; validated against the registered schema and encoded as Avro.
    payload        jsonb       NOT NULL,
    -- Optional user headers: a JSON object of string values, copied to Kafka record headers.
    headers        jsonb,
    -- Optional W3C trace context of the writing request, propagated as Kafka headers.
    traceparent    text,
    tracestate     text,
    -- Optional, informational: the writer's idea of the schema version. outboxd always encodes with the
    -- event type's configured schema (config avro.schema_dir / avro.event_types) and reports the registry's
    -- version in the schema_version header; this column does not select a version.
    schema_version int,
    -- When the row was written (informational; printed in UTC by outboxd).
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Example:
--   BEGIN;
--   UPDATE orders SET status = 'paid' WHERE id = 42;
--   INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
--   VALUES ('order', '42', 'OrderPaid', '{"orderId": 42, "amount": 19.90}');
--   COMMIT;
