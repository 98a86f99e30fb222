//! Use of results and supervision: honours (星级文明户, 最美家庭 …), inspections (区级巡查,
//! 监督管理小组) and satisfaction surveys (满意度测评).

use super::{Ctx, Rejection, RoleSet, VillageState};
use crate::ids::check_id;
use crate::pb::{HonourAwarded, HonourKind, InspectionOutcome, InspectionRecorded, SatisfactionSurveyRecorded};
use crate::time::Period;

impl VillageState {
    fn check_new_result(&self, kind: &'static str, id: &str) -> Result<(), Rejection> {
        check_id("id", id)?;
        if self.result_ids.contains(&format!("{kind}:{id}")) {
            return Err(Rejection::Duplicate { kind, id: id.to_owned() });
        }
        Ok(())
    }

    pub(super) fn decide_honour(&self, ctx: &Ctx, p: &HonourAwarded) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "award an honour")?;
        self.check_new_result("honour", &p.honour_id)?;
        self.active_household(&p.household_id)?;
        super::check_text("title", &p.title, true)?;
        let year_only = p.period.len() == 4 && p.period.bytes().all(|b| b.is_ascii_digit());
        if !year_only {
            Period::parse("period", &p.period)?;
        }
        match HonourKind::try_from(p.kind) {
            Ok(HonourKind::StarCivilisedHousehold) if (1..=5).contains(&p.stars) => Ok(()),
            Ok(HonourKind::StarCivilisedHousehold) => Err(Rejection::field("stars", "a 星级文明户 has 1 to 5 stars")),
            Ok(HonourKind::Unspecified) | Err(_) => Err(Rejection::field("kind", "an honour kind is required")),
            Ok(_) if p.stars == 0 => Ok(()),
            Ok(_) => Err(Rejection::field("stars", "only 星级文明户 carries stars")),
        }
    }

    pub(super) fn decide_inspection(&self, ctx: &Ctx, p: &InspectionRecorded) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::SUPERVISOR.or(RoleSet::AUDITOR).or(RoleSet::TOWNSHIP), "record an inspection")?;
        self.check_new_result("inspection", &p.inspection_id)?;
        check_id("scope", &p.scope)?;
        super::check_text("findings", &p.findings, false)?;
        super::check_hash("report_hash", &p.report_hash, false)?;
        match InspectionOutcome::try_from(p.outcome) {
            Ok(InspectionOutcome::Satisfactory | InspectionOutcome::IssuesFound) => Ok(()),
            _ => Err(Rejection::field("outcome", "must be SATISFACTORY or ISSUES_FOUND")),
        }
    }

    pub(super) fn decide_survey(&self, ctx: &Ctx, p: &SatisfactionSurveyRecorded) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN.or(RoleSet::SUPERVISOR), "record a satisfaction survey")?;
        self.check_new_result("survey", &p.survey_id)?;
        let quarter = p.period.len() == 7 && p.period.as_bytes()[4..6] == *b"-Q" && (b'1'..=b'4').contains(&p.period.as_bytes()[6]);
        if !quarter {
            Period::parse("period", &p.period)?;
        }
        if p.respondents == 0 {
            return Err(Rejection::field("respondents", "at least one respondent"));
        }
        let answered = p.satisfied as u64 + p.basically_satisfied as u64 + p.dissatisfied as u64;
        if answered != p.respondents as u64 {
            return Err(Rejection::field("respondents", format!("{answered} answers for {} respondents", p.respondents)));
        }
        Ok(())
    }
}
