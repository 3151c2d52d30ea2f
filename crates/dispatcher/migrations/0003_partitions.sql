-- Dispatch partitions: each sender's messages go through one dispatcher replica at a time, the
-- one holding its partition's lease, which can then hold the sender to its rate in memory.
-- Replicas say they are alive in `replicas`; each takes its fair share of the partitions,
-- renews its leases, and gives extra ones back when replicas join.
CREATE TABLE replicas (
    id      text        PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

CREATE TABLE partitions (
    partition   integer     PRIMARY KEY,
    owner       text,
    lease_until timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO partitions (partition) SELECT generate_series(0, 31);
