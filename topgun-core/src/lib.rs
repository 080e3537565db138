//! topgun-core
