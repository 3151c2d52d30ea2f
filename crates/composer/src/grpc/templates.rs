//! `sms.v1.TemplatesService`.

use sms_proto::v1::templates_service_server::TemplatesService;
use sms_proto::v1::{
    CreateTemplateRequest, CreateTemplateResponse, DeleteTemplateRequest, DeleteTemplateResponse,
    GetTemplateRequest, GetTemplateResponse, ListTemplatesRequest, ListTemplatesResponse,
    PreviewRequest, PreviewResponse, UpdateTemplateRequest, UpdateTemplateResponse,
    preview_request,
};

use crate::templates::{Preview, PreviewSource};
use tonic::{Request, Response, Status};

use super::{call, template};

/// `sms.v1.TemplatesService`.
#[derive(Clone)]
pub struct TemplatesApi {
    auth: super::Auth,
    templates: crate::templates::Templates,
}

impl TemplatesApi {
    /// The service over its capabilities, its calls authenticated by `auth`.
    pub fn new(auth: super::Auth, templates: crate::templates::Templates) -> Self {
        TemplatesApi { auth, templates }
    }
}

#[tonic::async_trait]
impl TemplatesService for TemplatesApi {
    async fn create_template(
        &self,
        request: Request<CreateTemplateRequest>,
    ) -> Result<Response<CreateTemplateResponse>, Status> {
        call!(
            self,
            request,
            "CreateTemplate",
            crate::error::TemplatesError,
            |caller| {
                let r = request.get_ref();
                self.templates
                    .create_template(&caller, &r.name, &r.body, r.shared)
                    .await
                    .map(|t| CreateTemplateResponse {
                        template: Some(template(t)),
                    })
            }
        )
    }

    async fn update_template(
        &self,
        request: Request<UpdateTemplateRequest>,
    ) -> Result<Response<UpdateTemplateResponse>, Status> {
        call!(
            self,
            request,
            "UpdateTemplate",
            crate::error::TemplatesError,
            |caller| {
                let r = request.get_ref();
                self.templates
                    .update_template(
                        &caller,
                        &r.id,
                        r.name.as_deref(),
                        r.body.as_deref(),
                        r.shared,
                    )
                    .await
                    .map(|t| UpdateTemplateResponse {
                        template: Some(template(t)),
                    })
            }
        )
    }

    async fn get_template(
        &self,
        request: Request<GetTemplateRequest>,
    ) -> Result<Response<GetTemplateResponse>, Status> {
        call!(
            self,
            request,
            "GetTemplate",
            crate::error::TemplatesError,
            |caller| {
                self.templates
                    .get_template(&caller, &request.get_ref().id)
                    .await
                    .map(|t| GetTemplateResponse {
                        template: Some(template(t)),
                    })
            }
        )
    }

    async fn list_templates(
        &self,
        request: Request<ListTemplatesRequest>,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        call!(
            self,
            request,
            "ListTemplates",
            crate::error::TemplatesError,
            |caller| {
                self.templates
                    .list_templates(&caller)
                    .await
                    .map(|rows| ListTemplatesResponse {
                        templates: rows.into_iter().map(template).collect(),
                    })
            }
        )
    }

    async fn delete_template(
        &self,
        request: Request<DeleteTemplateRequest>,
    ) -> Result<Response<DeleteTemplateResponse>, Status> {
        call!(
            self,
            request,
            "DeleteTemplate",
            crate::error::TemplatesError,
            |caller| {
                self.templates
                    .delete_template(&caller, &request.get_ref().id)
                    .await
                    .map(|()| DeleteTemplateResponse {})
            }
        )
    }

    async fn preview(
        &self,
        request: Request<PreviewRequest>,
    ) -> Result<Response<PreviewResponse>, Status> {
        call!(
            self,
            request,
            "Preview",
            crate::error::TemplatesError,
            |caller| {
                let r = request.get_ref();
                let source = match &r.source {
                    Some(preview_request::Source::TemplateId(id)) => PreviewSource::Template(id),
                    Some(preview_request::Source::Body(body)) => PreviewSource::Body(body),
                    None => PreviewSource::Unset,
                };
                match super::command::context(r.context.as_ref()) {
                    Err(e) => Err(e.into()),
                    Ok(context) => self
                        .templates
                        .preview(&caller, source, &context)
                        .await
                        .map(preview),
                }
            }
        )
    }
}

/// A preview as the API shows it.
fn preview(p: Preview) -> PreviewResponse {
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let (analysis, smart) = (p.analysis, p.smart);
    PreviewResponse {
        encoding: analysis.encoding.as_str().to_owned(),
        encoding_type: sms_bus::encoding_to_proto(analysis.encoding) as i32,
        segments: n(analysis.segments),
        characters: n(analysis.characters),
        non_gsm: analysis.non_gsm.iter().map(char::to_string).collect(),
        length: n(p.length),
        too_long: p.length > sms_core::MAX_BODY_CHARS,
        smart_encoding: smart.after.encoding.as_str().to_owned(),
        smart_encoding_type: sms_bus::encoding_to_proto(smart.after.encoding) as i32,
        smart_segments: n(smart.after.segments),
        segments_saved: n(smart.segments_saved()),
        left_in_segment: n(analysis.left_in_segment),
        smart_body: smart.text,
        body: p.body,
    }
}
