//! Limits on a message body.

/// Most characters (Unicode scalar values) a body may have after template rendering.
pub const MAX_BODY_CHARS: usize = 1000;

/// Why a body cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Empty, or only whitespace.
    #[error("the message body is empty")]
    Empty,
    /// Longer than [`MAX_BODY_CHARS`].
    #[error("the message body has {chars} characters; at most {MAX_BODY_CHARS} are allowed")]
    TooLong {
        /// Characters in the body.
        chars: usize,
    },
}

/// Checks a (rendered) body against the product's limits.
///
/// Characters are Unicode scalar values, as a person counts them: an emoji is one.
pub fn validate_body(body: &str) -> Result<(), BodyError> {
    if body.trim().is_empty() {
        return Err(BodyError::Empty);
    }
    let chars = body.chars().count();
    if chars > MAX_BODY_CHARS {
        return Err(BodyError::TooLong { chars });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert_eq!(validate_body(&"a".repeat(1000)), Ok(()));
        assert_eq!(validate_body(&"😀".repeat(1000)), Ok(()));
        assert_eq!(
            validate_body(&"a".repeat(1001)),
            Err(BodyError::TooLong { chars: 1001 })
        );
        assert_eq!(validate_body(""), Err(BodyError::Empty));
        assert_eq!(validate_body(" \n\t"), Err(BodyError::Empty));
    }
}
