//! The Key Judgement (KJ) report contract, once for every service that
//! speaks it: the section keys ([`SectionKey`]), the content of one report
//! version ([`Content`] and its parts) and the conversions between that
//! content and `treven.reports.v1.ReportContent` ([`proto`]).
//!
//! The reports service stores and edits this content; the agents service
//! writes it. Section keys travel on the wire and in stored JSON as their
//! lower_snake_case names (`key_judgements`); [`SectionKey::as_str`] and
//! [`SectionKey::parse`] are the only mapping.

pub mod content;
pub mod proto;
pub mod section;

pub use content::{
    Citation, Confidence, Content, DISCLAIMER, HeadlineCard, KeyJudgement, Pillar, SourceRef,
    TitleBlock, UncertaintyFlag, dataset_label, url_label,
};
pub use proto::{content_from_pb, content_to_pb, section_content_to_pb};
pub use section::SectionKey;
