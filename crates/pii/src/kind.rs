//! The kinds of personal data the detector reports.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of personal data a [`Finding`](crate::Finding) is.
///
/// The variants map 1:1 onto `treven.reports.v1.PiiType` (see
/// [`PiiKind::proto_value`]) and carry the placeholder documented there.
/// Serialised in `snake_case` (`"bank_account"`), as in the test corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// A person's name (title or context cue required); `[NAME]`.
    Name,
    /// An e-mail address, including `name [at] host [dot] com`; `[EMAIL]`.
    Email,
    /// A UK or international phone number; `[PHONE]`.
    Phone,
    /// A UK street address or full postcode; `[ADDRESS]`.
    Address,
    /// A national ID such as a UK National Insurance number; `[ID]`.
    NationalId,
    /// A passport, ID-card or travel-document number (in context); `[ID]`.
    Passport,
    /// A UK driving licence number; `[ID]`.
    DrivingLicence,
    /// A date of birth (in context); `[DOB]`.
    DateOfBirth,
    /// An IPv4 or IPv6 address; `[IP]`.
    IpAddress,
    /// A payment card number (Luhn-valid); `[CARD]`.
    CardNumber,
    /// A bank account: an IBAN (mod-97), or a UK sort code or account
    /// number after its cue; `[BANK]`.
    BankAccount,
    /// A UK vehicle registration mark or a VIN; `[VEHICLE]`.
    VehicleId,
    /// A medical record number such as an NHS number (in context); `[MEDICAL]`.
    MedicalRecord,
    /// A biometric reference such as a fingerprint record (in context); `[BIOMETRIC]`.
    Biometric,
}

impl PiiKind {
    /// Every kind, in `treven.reports.v1.PiiType` order.
    pub const ALL: [PiiKind; 14] = [
        PiiKind::Name,
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Address,
        PiiKind::NationalId,
        PiiKind::Passport,
        PiiKind::DrivingLicence,
        PiiKind::DateOfBirth,
        PiiKind::IpAddress,
        PiiKind::CardNumber,
        PiiKind::BankAccount,
        PiiKind::VehicleId,
        PiiKind::MedicalRecord,
        PiiKind::Biometric,
    ];

    /// The suggested redaction, e.g. `[EMAIL]`, as documented on
    /// `treven.reports.v1.PiiType`.
    pub const fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Name => "[NAME]",
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Address => "[ADDRESS]",
            PiiKind::NationalId | PiiKind::Passport | PiiKind::DrivingLicence => "[ID]",
            PiiKind::DateOfBirth => "[DOB]",
            PiiKind::IpAddress => "[IP]",
            PiiKind::CardNumber => "[CARD]",
            PiiKind::BankAccount => "[BANK]",
            PiiKind::VehicleId => "[VEHICLE]",
            PiiKind::MedicalRecord => "[MEDICAL]",
            PiiKind::Biometric => "[BIOMETRIC]",
        }
    }

    /// The numeric value of the matching `treven.reports.v1.PiiType`
    /// variant (`PII_TYPE_NAME = 1` … `PII_TYPE_BIOMETRIC = 14`).
    pub const fn proto_value(self) -> i32 {
        match self {
            PiiKind::Name => 1,
            PiiKind::Email => 2,
            PiiKind::Phone => 3,
            PiiKind::Address => 4,
            PiiKind::NationalId => 5,
            PiiKind::Passport => 6,
            PiiKind::DrivingLicence => 7,
            PiiKind::DateOfBirth => 8,
            PiiKind::IpAddress => 9,
            PiiKind::CardNumber => 10,
            PiiKind::BankAccount => 11,
            PiiKind::VehicleId => 12,
            PiiKind::MedicalRecord => 13,
            PiiKind::Biometric => 14,
        }
    }

    /// The kind for a `treven.reports.v1.PiiType` value; `None` for
    /// `PII_TYPE_UNSPECIFIED` (0) and unknown values.
    pub fn from_proto_value(value: i32) -> Option<PiiKind> {
        PiiKind::ALL.into_iter().find(|k| k.proto_value() == value)
    }

    /// The `snake_case` name, e.g. `bank_account`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PiiKind::Name => "name",
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Address => "address",
            PiiKind::NationalId => "national_id",
            PiiKind::Passport => "passport",
            PiiKind::DrivingLicence => "driving_licence",
            PiiKind::DateOfBirth => "date_of_birth",
            PiiKind::IpAddress => "ip_address",
            PiiKind::CardNumber => "card_number",
            PiiKind::BankAccount => "bank_account",
            PiiKind::VehicleId => "vehicle_id",
            PiiKind::MedicalRecord => "medical_record",
            PiiKind::Biometric => "biometric",
        }
    }

    /// How specific the evidence behind this kind is, used to resolve
    /// overlaps: checksum-validated kinds beat context-cued ones, which beat
    /// plain patterns, which beat names.
    pub(crate) const fn specificity(self) -> u8 {
        match self {
            PiiKind::BankAccount
            | PiiKind::CardNumber
            | PiiKind::NationalId
            | PiiKind::MedicalRecord
            | PiiKind::DrivingLicence => 4,
            PiiKind::DateOfBirth | PiiKind::Passport | PiiKind::Biometric => 3,
            PiiKind::Email
            | PiiKind::IpAddress
            | PiiKind::Phone
            | PiiKind::VehicleId
            | PiiKind::Address => 2,
            PiiKind::Name => 1,
        }
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown [`PiiKind`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PII kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for PiiKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PiiKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_values_round_trip_and_are_1_to_14() {
        for (i, kind) in PiiKind::ALL.into_iter().enumerate() {
            let expected = i32::try_from(i).map(|i| i + 1).ok();
            assert_eq!(Some(kind.proto_value()), expected);
            assert_eq!(PiiKind::from_proto_value(kind.proto_value()), Some(kind));
            assert_eq!(kind.as_str().parse::<PiiKind>(), Ok(kind));
        }
        assert_eq!(PiiKind::from_proto_value(0), None);
        assert_eq!(PiiKind::from_proto_value(15), None);
    }

    #[test]
    fn placeholders_follow_the_proto() {
        assert_eq!(PiiKind::Email.placeholder(), "[EMAIL]");
        assert_eq!(PiiKind::Passport.placeholder(), "[ID]");
        assert_eq!(PiiKind::BankAccount.placeholder(), "[BANK]");
        assert_eq!(PiiKind::VehicleId.placeholder(), "[VEHICLE]");
    }
}
