//! Table-driven tests of the machine: time jumps straight to `poll_timeout()`, every instant is
//! asserted exactly, power cuts are `Machine::new` from the last `Persist`.
