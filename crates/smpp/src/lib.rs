//! SMPP 3.4's wire format in our words, for the SMPP carrier adapter and the simulator's SMSC:
//! message ids in whatever form an SMSC writes them ([`id`]), delivery receipts ([`receipt`]),
//! error codes ([`errors`]), mobile-originated messages and their parts ([`mo`]), and the parts
//! a message is sent as ([`parts`]), exactly the ones `sms-core` counts and bills. The PDUs
//! themselves are `rusmpp`'s; the session (binds, window, receipts acknowledged once stored)
//! is the adapter's.

pub mod codec;
pub mod errors;
pub mod id;
pub mod mo;
pub mod parts;
pub mod pdu;
pub mod receipt;
pub mod tls;

pub use id::{IdMatch, SmscId};
pub use receipt::{MessageState, Receipt, ReceiptPdu};
