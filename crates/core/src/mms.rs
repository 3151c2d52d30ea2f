//! MMS attachment rules: how many, how big, and whether the bytes are what they claim to be.

use serde::Serialize;

use crate::phone::PhoneNumber;

/// Most attachments in one MMS.
pub const MAX_ATTACHMENTS: usize = 10;
/// Total bytes when every attachment is an image (5 MB, binary megabytes as carriers count).
pub const MAX_IMAGE_TOTAL_BYTES: u64 = 5 * 1024 * 1024;
/// Total bytes when any attachment is not an image (600 KB).
pub const MAX_MIXED_TOTAL_BYTES: u64 = 600 * 1024;

/// Text types that cannot be sniffed from their bytes; accepted when the bytes are UTF-8.
const TEXT_TYPES: [&str; 4] = ["text/plain", "text/vcard", "text/calendar", "text/csv"];

/// The types carriers deliver as MMS (canonical, see [`canonical_type`]): pictures, sound,
/// video, contact cards, calendar entries, PDF and plain text. Everything else is refused:
/// HTML and SVG (scripts run where they are opened), executables, archives, office documents.
pub const ALLOWED_TYPES: [&str; 26] = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/bmp",
    "image/tiff",
    "image/webp",
    "image/heif",
    "audio/mpeg",
    "audio/mp4",
    "audio/m4a",
    "audio/aac",
    "audio/amr",
    "audio/ogg",
    "audio/wav",
    "audio/3gpp",
    "video/mp4",
    "video/3gpp",
    "video/quicktime",
    "video/mpeg",
    "video/webm",
    "text/plain",
    "text/vcard",
    "text/calendar",
    "text/csv",
    "application/pdf",
    "video/3gpp2",
];

/// Whether carriers take `content_type` (canonical) as an MMS attachment.
pub fn is_allowed_type(content_type: &str) -> bool {
    ALLOWED_TYPES.contains(&content_type)
}

/// Why attachments cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MmsError {
    /// More than [`MAX_ATTACHMENTS`].
    #[error("{count} attachments; at most {MAX_ATTACHMENTS} are allowed")]
    TooManyAttachments {
        /// Attachments given.
        count: usize,
    },
    /// Images over [`MAX_IMAGE_TOTAL_BYTES`] in total.
    #[error("the images total {total} bytes; at most {MAX_IMAGE_TOTAL_BYTES} are allowed")]
    ImagesTooLarge {
        /// Total bytes.
        total: u64,
    },
    /// Attachments (not all images) over [`MAX_MIXED_TOTAL_BYTES`] in total.
    #[error(
        "the attachments total {total} bytes; with a non-image attachment at most \
         {MAX_MIXED_TOTAL_BYTES} are allowed"
    )]
    MixedTooLarge {
        /// Total bytes.
        total: u64,
    },
    /// An attachment with no bytes.
    #[error("attachment {index} is empty")]
    Empty {
        /// 0-based position.
        index: usize,
    },
    /// The bytes are of another type than declared.
    #[error(
        "attachment {index} is declared as {} but its content is {detected}",
        crate::text::quote(.declared)
    )]
    TypeMismatch {
        /// 0-based position.
        index: usize,
        /// The declared type.
        declared: String,
        /// The type sniffed from the bytes.
        detected: String,
    },
    /// A type carriers do not deliver as MMS, or that is unsafe to hand on (HTML, scripts,
    /// executables, archives).
    #[error(
        "attachment {index} is {}, which cannot be sent as MMS (pictures, audio, video, vCard, \
         calendar, PDF and plain text can)",
        crate::text::quote(.content_type)
    )]
    TypeNotAllowed {
        /// 0-based position.
        index: usize,
        /// The type, declared or found in the bytes.
        content_type: String,
    },
    /// The type cannot be recognised from the bytes and is not a plain-text type.
    #[error(
        "attachment {index} (declared {}) is not a recognisable media file",
        crate::text::quote(.declared)
    )]
    Unrecognized {
        /// 0-based position.
        index: usize,
        /// The declared type.
        declared: String,
    },
    /// Sender or recipient is outside the MMS countries.
    #[error("MMS is only available between US, CA and AU numbers")]
    CountryNotSupported,
}

impl MmsError {
    /// The machine-readable reason (`google.rpc.ErrorInfo.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            MmsError::TooManyAttachments { .. } => "TOO_MANY_ATTACHMENTS",
            MmsError::ImagesTooLarge { .. } => "IMAGES_TOO_LARGE",
            MmsError::MixedTooLarge { .. } => "ATTACHMENTS_TOO_LARGE",
            MmsError::Empty { .. } => "EMPTY_ATTACHMENT",
            MmsError::TypeMismatch { .. } => "MEDIA_TYPE_MISMATCH",
            MmsError::TypeNotAllowed { .. } => "MEDIA_TYPE_NOT_ALLOWED",
            MmsError::Unrecognized { .. } => "UNRECOGNIZED_MEDIA",
            MmsError::CountryNotSupported => "MMS_COUNTRY_NOT_SUPPORTED",
        }
    }
}

/// A checked attachment: its canonical type and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Media {
    /// Canonical MIME type (lowercase, no parameters, aliases resolved).
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
}

impl Media {
    /// Whether this is an image.
    pub fn is_image(&self) -> bool {
        self.content_type.starts_with("image/")
    }
}

/// Lowercases a MIME type, drops its parameters and resolves common aliases.
pub fn canonical_type(declared: &str) -> String {
    let base = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg".into(),
        "audio/mp3" => "audio/mpeg".into(),
        "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "audio/wav".into(),
        "text/x-vcard" | "text/directory" => "text/vcard".into(),
        "text/x-vcalendar" => "text/calendar".into(),
        "image/x-png" => "image/png".into(),
        "image/x-ms-bmp" => "image/bmp".into(),
        _ => base,
    }
}

/// The type of a file as its bytes (or, for plain-text kinds, its name) tell it.
pub fn sniff(file_name: &str, bytes: &[u8]) -> Option<String> {
    if let Some(kind) = infer::get(bytes) {
        return Some(canonical_type(kind.mime_type()));
    }
    let ext = file_name
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = match ext.as_str() {
        "txt" => "text/plain",
        "vcf" => "text/vcard",
        "ics" => "text/calendar",
        "csv" => "text/csv",
        _ => return None,
    };
    std::str::from_utf8(bytes).ok().map(|_| text.to_owned())
}

/// Checks one attachment: not empty, of a type carriers deliver, and its bytes agree with its
/// declared type.
pub fn check_attachment(index: usize, declared: &str, bytes: &[u8]) -> Result<Media, MmsError> {
    if bytes.is_empty() {
        return Err(MmsError::Empty { index });
    }
    let declared = canonical_type(declared);
    if !is_allowed_type(&declared) {
        return Err(MmsError::TypeNotAllowed {
            index,
            content_type: declared,
        });
    }
    let content_type = match infer::get(bytes) {
        Some(kind) => {
            let detected = canonical_type(kind.mime_type());
            if !is_allowed_type(&detected) {
                return Err(MmsError::TypeNotAllowed {
                    index,
                    content_type: detected,
                });
            }
            if detected != declared {
                return Err(MmsError::TypeMismatch {
                    index,
                    declared,
                    detected,
                });
            }
            detected
        }
        // Text is UTF-8 without control characters (NULs and the like are binary content).
        None if TEXT_TYPES.contains(&declared.as_str())
            && std::str::from_utf8(bytes).is_ok_and(|t| {
                t.chars()
                    .all(|c| crate::text::allowed(c, crate::text::Lines::Multi))
            }) =>
        {
            declared
        }
        None => return Err(MmsError::Unrecognized { index, declared }),
    };
    Ok(Media {
        content_type,
        size: bytes.len() as u64,
    })
}

/// Checks the count and total size of a set of checked attachments.
pub fn check_totals(media: &[Media]) -> Result<(), MmsError> {
    if media.len() > MAX_ATTACHMENTS {
        return Err(MmsError::TooManyAttachments { count: media.len() });
    }
    let total: u64 = media.iter().map(|m| m.size).sum();
    if media.iter().all(Media::is_image) {
        if total > MAX_IMAGE_TOTAL_BYTES {
            return Err(MmsError::ImagesTooLarge { total });
        }
    } else if total > MAX_MIXED_TOTAL_BYTES {
        return Err(MmsError::MixedTooLarge { total });
    }
    Ok(())
}

/// Checks a whole set of attachments given as (declared type, bytes).
pub fn check_attachments<'a, I>(items: I) -> Result<Vec<Media>, MmsError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let items: Vec<_> = items.into_iter().collect();
    // The count is checked first, so eleven attachments are refused without sniffing any.
    if items.len() > MAX_ATTACHMENTS {
        return Err(MmsError::TooManyAttachments { count: items.len() });
    }
    let media = items
        .into_iter()
        .enumerate()
        .map(|(i, (declared, bytes))| check_attachment(i, declared, bytes))
        .collect::<Result<Vec<_>, _>>()?;
    check_totals(&media)?;
    Ok(media)
}

/// MMS is allowed only when both ends are MMS-capable numbers in US, CA or AU.
pub fn check_route(from: &PhoneNumber, to: &PhoneNumber) -> Result<(), MmsError> {
    if from.mms_supported() && to.mms_supported() {
        Ok(())
    } else {
        Err(MmsError::CountryNotSupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0";
    const PDF: &[u8] = b"%PDF-1.7\n";

    fn sized(head: &[u8], size: usize) -> Vec<u8> {
        let mut v = head.to_vec();
        v.resize(size, 0);
        v
    }

    #[test]
    fn ten_images_up_to_five_megabytes() {
        let each = MAX_IMAGE_TOTAL_BYTES as usize / 10;
        let mut files: Vec<Vec<u8>> = (0..10).map(|_| sized(PNG, each)).collect();
        let rest = MAX_IMAGE_TOTAL_BYTES as usize - each * 10;
        files[0].resize(each + rest, 0);
        let ok = check_attachments(files.iter().map(|f| ("image/png", f.as_slice())));
        assert_eq!(
            ok.unwrap().iter().map(|m| m.size).sum::<u64>(),
            MAX_IMAGE_TOTAL_BYTES
        );
        files[0].push(0);
        assert_eq!(
            check_attachments(files.iter().map(|f| ("image/png", f.as_slice()))),
            Err(MmsError::ImagesTooLarge {
                total: MAX_IMAGE_TOTAL_BYTES + 1
            })
        );
    }

    #[test]
    fn a_non_image_caps_the_total_at_600_kb() {
        let img = sized(JPEG, 10 * 1024);
        let pdf = sized(PDF, MAX_MIXED_TOTAL_BYTES as usize - img.len());
        let set = [
            ("image/jpg", img.as_slice()),
            ("application/pdf", pdf.as_slice()),
        ];
        assert!(check_attachments(set).is_ok());
        let pdf = sized(PDF, MAX_MIXED_TOTAL_BYTES as usize - img.len() + 1);
        let set = [
            ("image/jpeg", img.as_slice()),
            ("application/pdf", pdf.as_slice()),
        ];
        assert_eq!(
            check_attachments(set),
            Err(MmsError::MixedTooLarge {
                total: MAX_MIXED_TOTAL_BYTES + 1
            })
        );
    }

    #[test]
    fn eleven_attachments_are_refused() {
        let f = PNG.to_vec();
        assert_eq!(
            check_attachments((0..11).map(|_| ("image/png", f.as_slice()))),
            Err(MmsError::TooManyAttachments { count: 11 })
        );
    }

    #[test]
    fn declared_type_must_match_content() {
        assert_eq!(
            check_attachment(2, "image/jpeg", PNG),
            Err(MmsError::TypeMismatch {
                index: 2,
                declared: "image/jpeg".into(),
                detected: "image/png".into()
            })
        );
        assert!(check_attachment(0, "IMAGE/PNG; name=x.png", PNG).is_ok());
        assert!(check_attachment(0, "text/vcard", b"BEGIN:VCARD\r\nEND:VCARD").is_ok());
        assert!(matches!(
            check_attachment(0, "application/octet-stream", b"\x01\x02garbage"),
            Err(MmsError::TypeNotAllowed { .. })
        ));
        assert!(matches!(
            check_attachment(0, "text/plain", b"\x01\x02garbage"),
            Err(MmsError::Unrecognized { .. })
        ));
        assert!(matches!(
            check_attachment(0, "text/plain", b"\xff\xfe\xfd"),
            Err(MmsError::Unrecognized { .. })
        ));
        assert_eq!(
            check_attachment(1, "image/png", b""),
            Err(MmsError::Empty { index: 1 })
        );
    }

    #[test]
    fn unsafe_and_undeliverable_types_are_refused() {
        let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>";
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0";
        let zip = b"PK\x03\x04\x14\0\0\0\x08\0";
        for (declared, bytes) in [
            ("text/html", html.as_slice()),
            (
                "image/svg+xml",
                b"<svg xmlns='http://www.w3.org/2000/svg'/>".as_slice(),
            ),
            ("application/zip", zip.as_slice()),
            ("application/x-executable", elf.as_slice()),
            ("application/octet-stream", elf.as_slice()),
            ("application/javascript", b"alert(1)".as_slice()),
        ] {
            assert!(
                matches!(
                    check_attachment(0, declared, bytes),
                    Err(MmsError::TypeNotAllowed { .. })
                ),
                "{declared}: {:?}",
                check_attachment(0, declared, bytes)
            );
        }
        // Declared as plain text, the bytes are HTML or an executable: not what was declared.
        assert!(check_attachment(0, "text/plain", html).is_err());
        assert!(check_attachment(0, "text/plain", elf).is_err());
        // Pictures, PDF and vCards pass; an audio alias is canonical.
        assert!(check_attachment(0, "application/pdf", PDF).is_ok());
        assert_eq!(canonical_type("audio/x-wav"), "audio/wav");
    }

    #[test]
    fn only_between_us_ca_au() {
        let p = |s| PhoneNumber::parse_valid(s, None).unwrap();
        assert!(check_route(&p("+12015550123"), &p("+15062345678")).is_ok());
        assert!(check_route(&p("+61412345678"), &p("+61412345679")).is_ok());
        assert_eq!(
            check_route(&p("+12015550123"), &p("+447400123456")),
            Err(MmsError::CountryNotSupported)
        );
    }
}
