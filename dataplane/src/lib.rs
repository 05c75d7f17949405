//! Shardcast media node: thread-per-core shards around the sans-IO core in `shardcast-sfu`.

pub mod node;
