//! Test support shared by the control-plane integration tests.
#![allow(dead_code)]

pub mod api;
pub mod etcd;
pub mod inproc;
pub mod ports;
pub mod serve;
