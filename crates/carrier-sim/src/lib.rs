//! A carrier simulator that speaks Twilio's wire format, so that the dispatcher's real Twilio
//! adapter and the inbound receiver's real webhook parser are what runs in development and tests.
//!
//! * `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: form-encoded, HTTP Basic auth with
//!   the account SID and auth token, a Twilio-shaped JSON reply with an `SM…` sid;
//! * status callbacks (`queued` → `sent` → `delivered`, or `failed` / `undelivered` with Twilio
//!   error codes) POSTed to the `StatusCallback` URL, signed with `X-Twilio-Signature`;
//! * behaviours: landlines (30006), spam filtering (30007), unknown errors (30008), unreachable
//!   handsets (30003), carrier opt-outs (21610), latency, HTTP 429 and 5xx;
//! * `GET …/Messages.json?To=…&From=…` (newest first, paged) and `GET …/Messages/{Sid}.json`:
//!   the messages it took and where each one stands, as Twilio's API lists and fetches them;
//! * callbacks retried as Twilio's connection overrides in the URL's fragment say (`#rc=5&rp=5xx`);
//! * faults for resolution tests: the API's reply never arriving after the message was taken,
//!   lookups answering 503 or garbage;
//! * every request received is recorded, for tests (`GET /_sim/requests`).
//!
//! Its own control endpoints (`GET /_sim/requests`, `POST /_sim/reply`, `GET /_sim/hooks`)
//! take the Basic auth of any of its accounts, like its REST API: in development the platform
//! may fetch from the simulator's address (inbound media), and an attachment URL pointing at
//! them must not read every organization's messages back (it has no credentials to send).

//!
//! By concern: `config` (behaviour and `SMS_SIM_*`), `sim` (state, the [`Sim`] handle, who
//! may call), `api` (the Messages API, media, control endpoints, the webhooks it posts),
//! `numbers` (numbers for rent), `smsc` (an SMPP 3.4 SMSC: binds, commands, `submit_sm`),
//! `smsc_deliver` (what it sends to binds: receipts, contacts' messages, `query_sm` answers),
//! `smsc_state`, `hooks` (a development webhook endpoint).

mod api;
mod config;
mod hooks;
mod numbers;
mod sim;
mod smsc;
mod smsc_deliver;
mod smsc_state;
mod stock;

pub use config::{
    AutoReply, Behaviour, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_SMPP_PASSWORD,
    DEFAULT_SMPP_SYSTEM_ID, SimConfig, config_from_env,
};
pub use sim::{Incoming, ReceivedHook, RecordedRequest, Sim};
pub use smsc_state::{ReceiptIds, SmppBehaviour, SubmittedPart};
