//! Raft log store (helper).
