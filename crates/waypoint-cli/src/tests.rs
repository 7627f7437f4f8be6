//! Unit tests of the binary's pure parts.
