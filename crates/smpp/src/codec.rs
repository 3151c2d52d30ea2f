//! PDUs on a TCP stream, one frame at a time. A frame whose length is absurd ends the
//! connection (nothing after it can be trusted to start a PDU), but a frame of a sane length
//! whose body cannot be read is handed up as [`Frame::Bad`], with its command id and sequence
//! number, so it can be answered (`generic_nack`) and the connection goes on: the length says
//! where the next PDU starts whatever the body held.

use bytes::{Buf, BufMut, BytesMut};
use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::Length;
use rusmpp::encode::owned::Encode;
use rusmpp::{Command, CommandStatus, Pdu};
use tokio_util::codec::{Decoder, Encoder};

/// The PDU header: length, command id, status, sequence number.
pub const HEADER: usize = 16;

/// The longest PDU read by default: a `submit_sm`/`deliver_sm` with 255 octets of message and
/// every TLV we know fits many times over.
pub const MAX_PDU: usize = 4096;

/// One PDU as read off the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A PDU read whole.
    Command(Box<Command>),
    /// A PDU whose body could not be read.
    Bad {
        /// The command id from its header.
        command_id: u32,
        /// Its sequence number, for the answer.
        sequence_number: u32,
        /// What was wrong with it.
        problem: String,
    },
}

/// A stream that can no longer be read as PDUs.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A `command_length` below the header's or above the limit.
    #[error(
        "command_length {length} (command id {command_id:#010x}, sequence {sequence_number}) \
         is outside {HEADER}..={max}"
    )]
    Length {
        /// What the header said.
        length: u32,
        /// The limit.
        max: usize,
        /// The command id that followed, as far as it can be read.
        command_id: u32,
        /// The sequence number that followed, as far as it can be read.
        sequence_number: u32,
    },
}

/// Reads [`Frame`]s and writes `rusmpp` [`Command`]s.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    max: usize,
}

impl Default for Framing {
    fn default() -> Self {
        Framing { max: MAX_PDU }
    }
}

impl Framing {
    /// Frames of at most `max` octets.
    pub fn with_max(max: usize) -> Self {
        Framing {
            max: max.max(HEADER),
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder for Framing {
    type Item = Frame;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        if src.len() < HEADER {
            return Ok(None);
        }
        let length = be32(&src[0..4]);
        let command_id = be32(&src[4..8]);
        let sequence_number = be32(&src[12..16]);
        let Some(len) = usize::try_from(length)
            .ok()
            .filter(|l| (HEADER..=self.max).contains(l))
        else {
            return Err(FramingError::Length {
                length,
                max: self.max,
                command_id,
                sequence_number,
            });
        };
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        frame.advance(4);
        let body_len = len - 4;
        match Command::decode(&mut frame, body_len) {
            Ok((command, _)) => Ok(Some(Frame::Command(Box::new(command)))),
            Err(e) => Ok(Some(Frame::Bad {
                command_id,
                sequence_number,
                problem: e.to_string(),
            })),
        }
    }
}

impl Encoder<Command> for Framing {
    type Error = std::io::Error;

    fn encode(&mut self, command: Command, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let length = 4 + command.length();
        dst.reserve(length);
        dst.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
        command.encode(dst);
        Ok(())
    }
}

/// Whether a command id is a response's (the high bit set).
pub fn is_response(command_id: u32) -> bool {
    command_id & 0x8000_0000 != 0
}

/// The `generic_nack` answering a PDU that could not be taken.
pub fn generic_nack(sequence_number: u32, status: CommandStatus) -> Command {
    Command::new(status, sequence_number, Pdu::GenericNack)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(command: Command) -> BytesMut {
        let mut b = BytesMut::new();
        Framing::default().encode(command, &mut b).unwrap();
        b
    }

    #[test]
    fn a_pdu_round_trips_and_a_partial_one_waits() {
        let mut b = bytes_of(Command::new(CommandStatus::EsmeRok, 7, Pdu::EnquireLink));
        let mut partial = b.split_to(10);
        assert_eq!(Framing::default().decode(&mut partial).unwrap(), None);
        partial.unsplit(b);
        let frame = Framing::default().decode(&mut partial).unwrap().unwrap();
        let Frame::Command(c) = frame else {
            panic!("{frame:?}")
        };
        assert_eq!(
            (c.id(), c.sequence_number()),
            (rusmpp::CommandId::EnquireLink, 7)
        );
        assert!(partial.is_empty());
    }

    #[test]
    fn an_unreadable_body_is_bad_and_the_next_pdu_is_still_read() {
        // A bind_transmitter whose system_id has no terminating NUL.
        let mut b = BytesMut::new();
        b.put_u32(16 + 5);
        b.put_u32(0x0000_0002);
        b.put_u32(0);
        b.put_u32(42);
        b.put_slice(b"abcde");
        b.unsplit(bytes_of(Command::new(
            CommandStatus::EsmeRok,
            43,
            Pdu::EnquireLink,
        )));
        let mut f = Framing::default();
        match f.decode(&mut b).unwrap().unwrap() {
            Frame::Bad {
                command_id,
                sequence_number,
                ..
            } => assert_eq!((command_id, sequence_number), (2, 42)),
            other => panic!("{other:?}"),
        }
        let Frame::Command(next) = f.decode(&mut b).unwrap().unwrap() else {
            panic!("the next PDU was lost")
        };
        assert_eq!(next.sequence_number(), 43);
    }

    #[test]
    fn an_absurd_length_ends_the_stream_with_what_the_header_said() {
        for length in [0_u32, 15, 4097, u32::MAX] {
            let mut b = BytesMut::new();
            b.put_u32(length);
            b.put_u32(0x0000_0004);
            b.put_u32(0);
            b.put_u32(9);
            match Framing::default().decode(&mut b) {
                Err(FramingError::Length {
                    length: l,
                    sequence_number: 9,
                    command_id: 4,
                    ..
                }) => assert_eq!(l, length),
                other => panic!("{length}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unknown_command_id_is_read_so_it_can_be_refused() {
        let mut b = BytesMut::new();
        b.put_u32(16);
        b.put_u32(0x0000_0777);
        b.put_u32(0);
        b.put_u32(5);
        let Frame::Command(c) = Framing::default().decode(&mut b).unwrap().unwrap() else {
            panic!("unknown ids are commands of their own")
        };
        assert!(matches!(c.pdu(), Some(Pdu::Other { .. }) | None), "{c:?}");
        assert_eq!(u32::from(c.id()), 0x777);
    }
}
