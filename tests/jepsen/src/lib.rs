//! raftconf's Jepsen-style fault suite: several real `raftconf` processes,
//! concurrent clients and watchers, faults injected on a seeded schedule,
//! every operation recorded, and the history checked.

pub mod check;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod recorder;
pub mod reloaders;
pub mod run;
pub mod schemas;
pub mod watchers;
pub mod workload;
