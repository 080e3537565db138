//! topgun-etcd
