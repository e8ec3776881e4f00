//! The checkers. Each reads the whole history and gives its own verdict.
