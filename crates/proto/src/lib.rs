//! Rust code generated from the Treven protos, and their descriptors.
//!
//! Modules mirror proto packages: `treven::tenants::v1` is package
//! `treven.tenants.v1`. The code is generated at build time by `build.rs`.

/// Generated code carries the protos' own doc comments; lints that cannot be
/// satisfied by generated code are silenced here only.
macro_rules! generated {
    ($file:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $file));
    };
}

/// Google API annotations (`google.api.http`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod google {
    /// `google.api`: HTTP rules for REST transcoding.
    pub mod api {
        generated!("google.api.rs");
    }
}

/// Treven contracts, one module per proto package.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod treven {
    /// `treven.common.v1`: types shared by every service.
    pub mod common {
        /// Version 1.
        pub mod v1 {
            generated!("treven.common.v1.rs");
        }
    }
    /// `treven.tenants.v1`: organisations, users, partners, grants, audit.
    pub mod tenants {
        /// Version 1.
        pub mod v1 {
            generated!("treven.tenants.v1.rs");
        }
    }
    /// `treven.documents.v1`: uploads, documents, sources, evidence, artifacts.
    pub mod documents {
        /// Version 1.
        pub mod v1 {
            generated!("treven.documents.v1.rs");
        }
    }
    /// `treven.reports.v1`: Key Judgement reports, versions, workflow, trends.
    pub mod reports {
        /// Version 1.
        pub mod v1 {
            generated!("treven.reports.v1.rs");
        }
    }
    /// `treven.agents.v1`: conversations, agent runs, generation, PII, usage.
    pub mod agents {
        /// Version 1.
        pub mod v1 {
            generated!("treven.agents.v1.rs");
        }
    }
}

/// The encoded `FileDescriptorSet` of every Treven proto and its imports,
/// with source info and custom options (`google.api.http`) preserved. Server
/// reflection serves it; the gateway builds its REST routes from it.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/treven_descriptor.bin"));

/// [`FILE_DESCRIPTOR_SET`] without source info (the protos' comments):
/// the same messages, services and options, for code that reads rules and
/// not documentation (the request validation rules).
pub const FILE_DESCRIPTOR_SET_WITHOUT_SOURCE_INFO: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/treven_descriptor_without_source_info.bin"
));

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn the_set_without_source_info_is_the_same_set_without_comments() {
        let full = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("the full set decodes");
        let lean =
            prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET_WITHOUT_SOURCE_INFO)
                .expect("the lean set decodes");
        assert!(full.file.iter().any(|f| f.source_code_info.is_some()));
        assert!(lean.file.iter().all(|f| f.source_code_info.is_none()));
        let stripped: Vec<_> = full
            .file
            .into_iter()
            .map(|mut f| {
                f.source_code_info = None;
                f
            })
            .collect();
        assert_eq!(stripped, lean.file);
        assert!(
            super::FILE_DESCRIPTOR_SET_WITHOUT_SOURCE_INFO.len() < super::FILE_DESCRIPTOR_SET.len()
        );
        // Custom options (the validation rules, `google.api.http`) stay.
        assert!(
            super::FILE_DESCRIPTOR_SET_WITHOUT_SOURCE_INFO
                .windows(7)
                .any(|w| w == b"/api/me")
        );
    }

    #[test]
    fn descriptor_set_has_every_service_with_http_rules() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let tenants = set
            .file
            .iter()
            .find(|f| f.package() == "treven.tenants.v1")
            .expect("tenants file present");
        let service = &tenants.service[0];
        assert_eq!(service.name(), "TenantsService");
        assert!(service.method.iter().any(|m| m.name() == "GetMe"));
        // prost-types drops unknown extensions when decoding, so check the raw
        // bytes: the `google.api.http` rule of GetMe must survive compilation.
        assert!(
            super::FILE_DESCRIPTOR_SET
                .windows(7)
                .any(|w| w == b"/api/me"),
            "http rules are kept in the descriptor set"
        );
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/api/annotations.proto")
        );
    }
}
