//! `sms.v1.NumbersService`.

use sms_proto::v1::numbers_service_server::NumbersService;
use sms_proto::v1::{
    AddGroupMemberRequest, AddGroupMemberResponse, AddNumberRequest, AddNumberResponse,
    CreateGroupRequest, CreateGroupResponse, GetNumberRequest, GetNumberResponse,
    ImportNumberRequest, ImportNumberResponse, ListGroupsRequest, ListGroupsResponse,
    ListNumbersRequest, ListNumbersResponse, ReleaseNumberRequest, ReleaseNumberResponse,
    RemoveGroupMemberRequest, RemoveGroupMemberResponse, RentNumberRequest, RentNumberResponse,
    SearchAvailableNumbersRequest, SearchAvailableNumbersResponse, SetNumberCarrierRequest,
    SetNumberCarrierResponse, SetNumberRateRequest, SetNumberRateResponse, import_number_request,
    rent_number_request,
};
use tonic::{Request, Response, Status};

use sms_proto::v1::{Group, NumberKind as ProtoNumberKind, NumberSource, PhoneNumber};

use sms_core::phone::Region;
use sms_core::text::{self, Lines};
use sms_proto::v1::{AvailableNumber, AvailableNumberType, add_number_request};
use sms_twilio::numbers::{Category, SearchQuery};

use crate::NumbersError;
use crate::numbers::{NewNumber, Owner};
use crate::renting::{AREA_CODE_COUNTRIES, Available, DEFAULT_SEARCH, MAX_SEARCH, Search};
use crate::store::{GroupRow, NumberRow};

/// Runs a call body in its span, with the authenticated caller (`sms_runtime::rpc_call`).
macro_rules! call {
    ($self:ident, $request:ident, $method:literal, |$caller:ident| $body:expr) => {
        sms_runtime::rpc_call!($self, $request, $method, crate::NumbersError, |$caller| {
            $body
        })
    };
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn group(g: GroupRow) -> Group {
    Group {
        id: g.id.to_string(),
        name: g.name,
        member_user_ids: g.members,
    }
}

fn number(n: NumberRow) -> PhoneNumber {
    PhoneNumber {
        id: n.id.to_string(),
        organization_id: n.organization_id,
        number: n.number.to_string(),
        region: n.region,
        number_type: n.number_type.as_str().to_owned(),
        sms_capable: n.sms_capable,
        mms_capable: n.mms_capable,
        voice_capable: n.voice_capable,
        kind: match n.kind {
            sms_core::NumberKind::External => ProtoNumberKind::External as i32,
            sms_core::NumberKind::Internal => ProtoNumberKind::Internal as i32,
        },
        owner_user_id: n.owner_user_id.unwrap_or_default(),
        owner_group_id: n.owner_group_id.unwrap_or_default(),
        created_at: Some(timestamp(n.created_at)),
        send_rate: n.send_rate.unwrap_or(0.0),
        send_burst: n
            .send_burst
            .and_then(|b| u32::try_from(b).ok())
            .unwrap_or(0),
        source: match n.source {
            crate::store::NumberSource::Recorded => NumberSource::Recorded as i32,
            crate::store::NumberSource::Rented => NumberSource::Rented as i32,
            crate::store::NumberSource::Imported => NumberSource::Imported as i32,
        },
        carrier_sid: n.carrier_sid.unwrap_or_default(),
        carrier_connection: n.carrier_connection.unwrap_or_default(),
    }
}

/// `sms.v1.NumbersService`.
#[derive(Clone)]
pub struct NumbersApi {
    auth: sms_runtime::rpc::Auth,
    numbers: crate::numbers::Numbers,
}

impl NumbersApi {
    /// The service over its capabilities, its calls authenticated by `auth`.
    pub fn new(auth: sms_runtime::rpc::Auth, numbers: crate::numbers::Numbers) -> Self {
        NumbersApi { auth, numbers }
    }
}

#[tonic::async_trait]
impl NumbersService for NumbersApi {
    async fn search_available_numbers(
        &self,
        request: Request<SearchAvailableNumbersRequest>,
    ) -> Result<Response<SearchAvailableNumbersResponse>, Status> {
        call!(self, request, "SearchAvailableNumbers", |caller| {
            self.numbers
                .search_available(&caller, search(request.get_ref())?)
                .await
                .map(|found| SearchAvailableNumbersResponse {
                    numbers: found.numbers.into_iter().map(available).collect(),
                    voice_only: found.voice_only,
                    warnings: found.warnings,
                })
        })
    }

    async fn rent_number(
        &self,
        request: Request<RentNumberRequest>,
    ) -> Result<Response<RentNumberResponse>, Status> {
        call!(self, request, "RentNumber", |caller| {
            let r = request.get_ref();
            let owner = match &r.owner {
                Some(rent_number_request::Owner::OwnerUserId(u)) => (Some(u.as_str()), None),
                Some(rent_number_request::Owner::OwnerGroupId(g)) => (None, Some(g.as_str())),
                None => (None, None),
            };
            self.numbers
                .rent_number(&caller, &r.number, owner, r.allow_voice_only)
                .await
                .map(|(row, warnings)| RentNumberResponse {
                    number: Some(number(row)),
                    warnings,
                })
        })
    }

    async fn import_number(
        &self,
        request: Request<ImportNumberRequest>,
    ) -> Result<Response<ImportNumberResponse>, Status> {
        call!(self, request, "ImportNumber", |caller| {
            let r = request.get_ref();
            let owner = match &r.owner {
                Some(import_number_request::Owner::OwnerUserId(u)) => (Some(u.as_str()), None),
                Some(import_number_request::Owner::OwnerGroupId(g)) => (None, Some(g.as_str())),
                None => (None, None),
            };
            self.numbers
                .import_number(&caller, &r.number, owner)
                .await
                .map(|(row, warnings)| ImportNumberResponse {
                    number: Some(number(row)),
                    warnings,
                })
        })
    }

    async fn add_number(
        &self,
        request: Request<AddNumberRequest>,
    ) -> Result<Response<AddNumberResponse>, Status> {
        call!(self, request, "AddNumber", |caller| {
            self.numbers
                .add_number(&caller, new_number(request.into_inner())?)
                .await
                .map(|(row, warnings)| AddNumberResponse {
                    number: Some(number(row)),
                    warnings,
                })
        })
    }

    async fn list_numbers(
        &self,
        request: Request<ListNumbersRequest>,
    ) -> Result<Response<ListNumbersResponse>, Status> {
        call!(self, request, "ListNumbers", |caller| {
            self.numbers
                .list_numbers(&caller)
                .await
                .map(|rows| ListNumbersResponse {
                    numbers: rows.into_iter().map(number).collect(),
                })
        })
    }

    async fn get_number(
        &self,
        request: Request<GetNumberRequest>,
    ) -> Result<Response<GetNumberResponse>, Status> {
        call!(self, request, "GetNumber", |caller| {
            self.numbers
                .get_number(&caller, &request.get_ref().number)
                .await
                .map(|n| GetNumberResponse {
                    number: Some(number(n)),
                })
        })
    }

    async fn release_number(
        &self,
        request: Request<ReleaseNumberRequest>,
    ) -> Result<Response<ReleaseNumberResponse>, Status> {
        call!(self, request, "ReleaseNumber", |caller| {
            self.numbers
                .release_number(&caller, &request.get_ref().number)
                .await
                .map(|n| ReleaseNumberResponse {
                    number: Some(number(n)),
                })
        })
    }

    async fn set_number_rate(
        &self,
        request: Request<SetNumberRateRequest>,
    ) -> Result<Response<SetNumberRateResponse>, Status> {
        call!(self, request, "SetNumberRate", |caller| {
            let r = request.get_ref();
            self.numbers
                .set_number_rate(&caller, &r.number, r.send_rate, r.send_burst)
                .await
                .map(|n| SetNumberRateResponse {
                    number: Some(number(n)),
                })
        })
    }

    async fn set_number_carrier(
        &self,
        request: Request<SetNumberCarrierRequest>,
    ) -> Result<Response<SetNumberCarrierResponse>, Status> {
        call!(self, request, "SetNumberCarrier", |caller| {
            let r = request.get_ref();
            self.numbers
                .set_number_carrier(&caller, &r.number, &r.carrier_connection)
                .await
                .map(|n| SetNumberCarrierResponse {
                    number: Some(number(n)),
                })
        })
    }

    async fn create_group(
        &self,
        request: Request<CreateGroupRequest>,
    ) -> Result<Response<CreateGroupResponse>, Status> {
        call!(self, request, "CreateGroup", |caller| {
            self.numbers
                .create_group(&caller, &request.get_ref().name)
                .await
                .map(|g| CreateGroupResponse {
                    group: Some(group(g)),
                })
        })
    }

    async fn add_group_member(
        &self,
        request: Request<AddGroupMemberRequest>,
    ) -> Result<Response<AddGroupMemberResponse>, Status> {
        call!(self, request, "AddGroupMember", |caller| {
            let r = request.get_ref();
            self.numbers
                .set_member(&caller, &r.group_id, &r.user_id, true)
                .await
                .map(|g| AddGroupMemberResponse {
                    group: Some(group(g)),
                })
        })
    }

    async fn remove_group_member(
        &self,
        request: Request<RemoveGroupMemberRequest>,
    ) -> Result<Response<RemoveGroupMemberResponse>, Status> {
        call!(self, request, "RemoveGroupMember", |caller| {
            let r = request.get_ref();
            self.numbers
                .set_member(&caller, &r.group_id, &r.user_id, false)
                .await
                .map(|g| RemoveGroupMemberResponse {
                    group: Some(group(g)),
                })
        })
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        call!(self, request, "ListGroups", |caller| {
            self.numbers
                .list_groups(&caller)
                .await
                .map(|groups| ListGroupsResponse {
                    groups: groups.into_iter().map(group).collect(),
                })
        })
    }
}

/// A search as asked for, checked once.
fn search(req: &SearchAvailableNumbersRequest) -> Result<Search, NumbersError> {
    {
        text::check("country", &req.country, 8, Lines::Single)?;
        let country: Region = req
            .country
            .parse()
            .map_err(|_| NumbersError::InvalidCountry(req.country.clone()))?;
        if !country.sms_supported() {
            return Err(NumbersError::UnsupportedCountry {
                region: country.to_string(),
            });
        }
        let category = match AvailableNumberType::try_from(req.r#type) {
            Ok(AvailableNumberType::Unspecified | AvailableNumberType::Local) => Category::Local,
            Ok(AvailableNumberType::Mobile) => Category::Mobile,
            Ok(AvailableNumberType::TollFree) => Category::TollFree,
            Err(_) => return Err(NumbersError::UnknownNumberType(req.r#type)),
        };
        text::check("area_code", &req.area_code, 16, Lines::Single)?;
        let area_code = req.area_code.trim();
        let area_code = if area_code.is_empty() {
            None
        } else {
            let bad = |why| NumbersError::InvalidAreaCode {
                area_code: req.area_code.clone(),
                why,
            };
            if !area_code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("an area code is digits only"));
            }
            if area_code.len() != 3 {
                return Err(bad("an area code has three digits"));
            }
            if !AREA_CODE_COUNTRIES.contains(&country.as_str()) {
                return Err(bad(
                    "area codes apply to US, CA and PR numbers; search by contains elsewhere",
                ));
            }
            if category == Category::TollFree {
                return Err(bad("toll-free numbers have no area code"));
            }
            Some(area_code.to_owned())
        };
        text::check("contains", &req.contains, 32, Lines::Single)?;
        let contains = req.contains.trim();
        let contains = if contains.is_empty() {
            None
        } else {
            let bad = |why| NumbersError::InvalidPattern {
                pattern: req.contains.clone(),
                why,
            };
            if !contains
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '*')
            {
                return Err(bad(
                    "use digits, letters (as on a keypad) and * for any digit",
                ));
            }
            if !(2..=16).contains(&contains.len()) {
                return Err(bad("a pattern has 2 to 16 characters"));
            }
            if contains.chars().all(|c| c == '*') {
                return Err(bad("a pattern needs at least one digit or letter"));
            }
            Some(contains.to_owned())
        };
        Ok(Search {
            country,
            category,
            query: SearchQuery {
                area_code,
                contains,
                sms: req.sms,
                mms: req.mms,
                voice: req.voice,
                page_size: match req.limit {
                    0 => DEFAULT_SEARCH,
                    n => n.min(MAX_SEARCH),
                },
            },
        })
    }
}

fn available(n: Available) -> AvailableNumber {
    AvailableNumber {
        friendly_name: n.friendly_name,
        country: n.country,
        locality: n.locality.unwrap_or_default(),
        region: n.region.unwrap_or_default(),
        r#type: match n.category {
            Category::Local => AvailableNumberType::Local,
            Category::Mobile => AvailableNumberType::Mobile,
            Category::TollFree => AvailableNumberType::TollFree,
        } as i32,
        sms_capable: n.sms,
        mms_capable: n.mms,
        voice_capable: n.voice,
        number: n.number,
    }
}

/// A number to record, checked once: its number parsed, its kind and owner read.
fn new_number(req: AddNumberRequest) -> Result<NewNumber, NumbersError> {
    text::check(
        "number",
        &req.number,
        sms_core::phone::MAX_INPUT_LEN,
        Lines::Single,
    )?;
    let number = sms_core::PhoneNumber::parse_valid(&req.number, None)
        .map_err(NumbersError::InvalidNumber)?;
    let kind = match req.kind() {
        ProtoNumberKind::External => sms_core::NumberKind::External,
        ProtoNumberKind::Internal | ProtoNumberKind::Unspecified => sms_core::NumberKind::Internal,
    };
    Ok(NewNumber {
        number,
        kind,
        owner: match req.owner {
            Some(add_number_request::Owner::OwnerUserId(u)) => Owner::User(u),
            Some(add_number_request::Owner::OwnerGroupId(g)) => Owner::Group(g),
            None => Owner::Unset,
        },
        sms_capable: req.sms_capable,
        mms_capable: req.mms_capable,
        voice_capable: req.voice_capable,
        send_rate: req.send_rate.unwrap_or(0.0),
        send_burst: req.send_burst.unwrap_or(0),
        carrier_connection: req.carrier_connection,
    })
}
