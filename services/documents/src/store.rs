//! Storage of the documents service: document, source and artifact metadata
//! in DynamoDB ([`meta`]) and the bytes in S3 ([`blobs`]). Neither sees wire
//! types.

pub mod blobs;
pub mod meta;
