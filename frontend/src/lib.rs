//! loopvm frontend.
