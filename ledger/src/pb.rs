//! The protobuf types of `proto/jifen/v1/events.proto`, generated at build time by prost
//! from a descriptor set compiled by protox (no system `protoc`).
#![allow(missing_docs, clippy::all)]
include!(concat!(env!("OUT_DIR"), "/jifen.v1.rs"));
