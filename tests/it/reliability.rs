//! Delivery guarantees under injected faults (issue 4). Filled in by the reliability work.
