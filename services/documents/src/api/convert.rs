//! Proto ⇄ domain conversions of the documents API: statuses, formats,
//! publisher kinds, documents, versions and sources. Pure functions; the
//! handlers in the parent module call them.

use treven_mesh::ServiceError;
use treven_mesh::wire::{from_timestamp, timestamp};
use treven_proto::treven::common::v1::TimeRange;
use treven_proto::treven::documents::v1 as pb;

use crate::model::{ArtifactFormat, Document, DocumentStatus, DocumentVersion};
use crate::sources::{self, Locator, PublisherKind, Source, TrustScore};

pub(super) fn status_to_pb(status: DocumentStatus) -> pb::DocumentStatus {
    match status {
        DocumentStatus::Pending => pb::DocumentStatus::Pending,
        DocumentStatus::Available => pb::DocumentStatus::Available,
        DocumentStatus::Rejected => pb::DocumentStatus::Rejected,
        DocumentStatus::Deleted => pb::DocumentStatus::Deleted,
        DocumentStatus::Erased => pb::DocumentStatus::Erased,
    }
}

pub(super) fn status_from_pb(raw: i32) -> Result<Option<DocumentStatus>, ServiceError> {
    match pb::DocumentStatus::try_from(raw) {
        Ok(pb::DocumentStatus::Unspecified) => Ok(None),
        Ok(pb::DocumentStatus::Pending) => Ok(Some(DocumentStatus::Pending)),
        Ok(pb::DocumentStatus::Available) => Ok(Some(DocumentStatus::Available)),
        Ok(pb::DocumentStatus::Rejected) => Ok(Some(DocumentStatus::Rejected)),
        Ok(pb::DocumentStatus::Deleted) => Ok(Some(DocumentStatus::Deleted)),
        Ok(pb::DocumentStatus::Erased) => Ok(Some(DocumentStatus::Erased)),
        Err(_) => Err(ServiceError::invalid_field("status", "unknown status")),
    }
}

pub(super) fn format_from_pb(field: &str, raw: i32) -> Result<ArtifactFormat, ServiceError> {
    match pb::ArtifactFormat::try_from(raw) {
        Ok(pb::ArtifactFormat::Markdown) => Ok(ArtifactFormat::Md),
        Ok(pb::ArtifactFormat::Pdf) => Ok(ArtifactFormat::Pdf),
        Ok(pb::ArtifactFormat::Docx) => Ok(ArtifactFormat::Docx),
        _ => Err(ServiceError::invalid_field(
            field,
            "must be markdown, pdf or docx",
        )),
    }
}

pub(super) fn format_to_pb(format: ArtifactFormat) -> pb::ArtifactFormat {
    match format {
        ArtifactFormat::Md => pb::ArtifactFormat::Markdown,
        ArtifactFormat::Pdf => pb::ArtifactFormat::Pdf,
        ArtifactFormat::Docx => pb::ArtifactFormat::Docx,
    }
}

pub(super) fn kind_from_pb(raw: i32) -> Result<PublisherKind, ServiceError> {
    use pb::PublisherKind as K;
    Ok(match K::try_from(raw) {
        Ok(K::Government) => PublisherKind::Government,
        Ok(K::Intergovernmental) => PublisherKind::Intergovernmental,
        Ok(K::Research) => PublisherKind::Research,
        Ok(K::Ngo) => PublisherKind::Ngo,
        Ok(K::BusinessHumanRights) => PublisherKind::BusinessHumanRights,
        Ok(K::Journalism) => PublisherKind::Journalism,
        Ok(K::Other) => PublisherKind::Other,
        Ok(K::Internal) => PublisherKind::Internal,
        Ok(K::AnonymousBlog) => PublisherKind::AnonymousBlog,
        Ok(K::UnverifiedSocial) => PublisherKind::UnverifiedSocial,
        Ok(K::Unspecified) => {
            return Err(ServiceError::invalid_field("publisher_kind", "is required"));
        }
        Err(_) => {
            return Err(ServiceError::invalid_field(
                "publisher_kind",
                "unknown publisher kind",
            ));
        }
    })
}

pub(super) fn kind_to_pb(kind: PublisherKind) -> pb::PublisherKind {
    use pb::PublisherKind as K;
    match kind {
        PublisherKind::Government => K::Government,
        PublisherKind::Intergovernmental => K::Intergovernmental,
        PublisherKind::Research => K::Research,
        PublisherKind::Ngo => K::Ngo,
        PublisherKind::BusinessHumanRights => K::BusinessHumanRights,
        PublisherKind::Journalism => K::Journalism,
        PublisherKind::Other => K::Other,
        PublisherKind::Internal => K::Internal,
        PublisherKind::AnonymousBlog => K::AnonymousBlog,
        PublisherKind::UnverifiedSocial => K::UnverifiedSocial,
    }
}

pub(super) fn document_to_pb(document: Document) -> pb::Document {
    pb::Document {
        id: document.id.to_string(),
        org_id: document.org_id.to_string(),
        file_name: document.file_name.as_str().to_owned(),
        content_type: document.content_type,
        size_bytes: document.size_bytes,
        sha256: document.sha256.as_str().to_owned(),
        status: status_to_pb(document.status).into(),
        rejection_reason: document.rejection_reason,
        version_id: document.version_id,
        created_by: document.created_by,
        created_at: Some(timestamp(document.created_at)),
        updated_at: Some(timestamp(document.updated_at)),
        erased_at: document.erased_at.map(timestamp),
    }
}

pub(super) fn version_to_pb(version: DocumentVersion) -> pb::DocumentVersion {
    pb::DocumentVersion {
        version_id: version.version_id,
        size_bytes: version.size_bytes,
        sha256: version
            .sha256
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        delete_marker: version.delete_marker,
        created_at: Some(timestamp(version.created_at)),
    }
}

pub(super) fn source_to_pb(org: &str, source: Source, score: TrustScore) -> pb::Source {
    let locator = match source.locator {
        Locator::Url(url) => pb::source::Locator::Url(url),
        Locator::Dataset { dataset, from, to } => {
            pb::source::Locator::Dataset(pb::DatasetReference {
                dataset,
                date_range: Some(TimeRange {
                    start: from.map(timestamp),
                    end: to.map(timestamp),
                }),
            })
        }
    };
    let tier = match source.publisher_kind.tier() {
        Ok(1) => pb::PublisherTier::PublisherTier1,
        Ok(2) => pb::PublisherTier::PublisherTier2,
        _ => pb::PublisherTier::PublisherTier3,
    };
    pb::Source {
        id: source.id,
        org_id: org.to_owned(),
        locator: Some(locator),
        title: source.title,
        publisher: source.publisher,
        publisher_kind: kind_to_pb(source.publisher_kind).into(),
        publisher_tier: tier.into(),
        published_at: source.published_at.map(timestamp),
        summary: source.summary,
        tags: source.tags,
        countries: source.countries,
        sectors: source.sectors,
        primary_data: source.primary_data,
        methodology_documented: source.methodology_documented,
        trust: Some(pb::TrustScore {
            total: score.total.into(),
            publisher_tier: score.publisher_tier.into(),
            recency: score.recency.into(),
            primary_data: score.primary_data.into(),
            methodology: score.methodology.into(),
            geographic_match: score.geographic_match.into(),
            scored_at: Some(timestamp(chrono::Utc::now())),
        }),
        created_at: Some(timestamp(source.created_at)),
        updated_at: Some(timestamp(source.updated_at)),
    }
}

pub(super) fn source_from_pb(message: pb::UpsertSourceRequest) -> Result<Source, ServiceError> {
    let locator = match message.locator {
        Some(pb::upsert_source_request::Locator::Url(url)) => Locator::url(&url)?,
        Some(pb::upsert_source_request::Locator::Dataset(dataset)) => {
            let range = dataset.date_range.unwrap_or_default();
            Locator::Dataset {
                dataset: sources::text("dataset.dataset", &dataset.dataset, 1, 200)?,
                from: range
                    .start
                    .as_ref()
                    .map(|t| from_timestamp("dataset.date_range.start", t))
                    .transpose()?,
                to: range
                    .end
                    .as_ref()
                    .map(|t| from_timestamp("dataset.date_range.end", t))
                    .transpose()?,
            }
        }
        None => {
            return Err(ServiceError::invalid_field(
                "url",
                "a url or a dataset reference is required",
            ));
        }
    };
    let publisher_kind = kind_from_pb(message.publisher_kind)?;
    publisher_kind
        .tier()
        .map_err(|reason| ServiceError::invalid_field("publisher_kind", reason))?;
    let limited =
        |field: &str, values: Vec<String>, max: usize| -> Result<Vec<String>, ServiceError> {
            if values.len() > max {
                return Err(ServiceError::invalid_field(
                    field,
                    format!("at most {max} values"),
                ));
            }
            Ok(values)
        };
    let tags = limited("tags", message.tags, 20)?
        .iter()
        .map(|t| sources::tag("tags", t))
        .collect::<Result<Vec<_>, _>>()?;
    let countries = limited("countries", message.countries, 60)?
        .iter()
        .map(|c| sources::country_code("countries", c))
        .collect::<Result<Vec<_>, _>>()?;
    let sectors = limited("sectors", message.sectors, 20)?
        .iter()
        .map(|s| sources::text("sectors", s, 1, 60))
        .collect::<Result<Vec<_>, _>>()?;
    let now = chrono::Utc::now();
    Ok(Source {
        id: locator.source_id(),
        locator,
        title: sources::text("title", &message.title, 1, 300)?,
        publisher: sources::text("publisher", &message.publisher, 1, 200)?,
        publisher_kind,
        published_at: message
            .published_at
            .as_ref()
            .map(|t| from_timestamp("published_at", t))
            .transpose()?,
        summary: sources::text("summary", &message.summary, 0, 2000)?,
        tags,
        countries,
        sectors,
        primary_data: message.primary_data,
        methodology_documented: message.methodology_documented,
        created_at: now,
        updated_at: now,
    })
}
