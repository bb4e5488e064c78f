//! The rule-transition checks (admin API of a `ucupdate-server`): pending for test devices,
//! approve, restore and reset, each seen from the device side.

use super::*;

impl Ctx<'_> {
    // ------------------------------------------------------------------------------------
    // Rules (admin)
    // ------------------------------------------------------------------------------------

    pub(super) async fn test_device_pending(&mut self) -> Verdict {
        let [v1, v2, _] = self.advance(Stage::V2Pending).await?;
        match self.check_as(v1, Who::Test).await? {
            CheckResponse::Update(o) if o.version == v2 && o.status == OfferStatus::Pending => {
                Ok(format!(
                    "test device {} on {v1} is offered {v2} (pending)",
                    self.test_mac()
                ))
            }
            other => fail(format!(
                "with {v2} pending, test device {} on {v1} got {}",
                self.test_mac(),
                describe(&other)
            )),
        }
    }

    pub(super) async fn regular_device_approved(&mut self) -> Verdict {
        let [v1, v2, _] = self.advance(Stage::V2Pending).await?;
        let on_approved = self.check_as(v1, Who::Regular).await?;
        if on_approved != CheckResponse::NoUpdate {
            return fail(format!(
                "with {v2} pending, a regular device on the approved {v1} got {}",
                describe(&on_approved)
            ));
        }
        let Some(behind) = older(v1) else {
            return fail("the probe version has no older version");
        };
        match self.check_as(behind, Who::Regular).await? {
            CheckResponse::Update(o) if o.version == v1 && o.status == OfferStatus::Approved => {
                Ok(format!(
                    "with {v2} pending: a regular device on {v1} gets downloads=0, on {behind} \
                     the approved {v1}"
                ))
            }
            other => fail(format!(
                "with {v2} pending, a regular device on {behind} got {}, expected the \
                 approved {v1}",
                describe(&other)
            )),
        }
    }

    pub(super) async fn approve_transition(&mut self) -> Verdict {
        let [v1, v2, _] = self.advance(Stage::V2Approved).await?;
        match self.check_as(v1, Who::Regular).await? {
            CheckResponse::Update(o) if o.version == v2 && o.status == OfferStatus::Approved => {}
            other => {
                return fail(format!(
                    "after approving {v2}, a regular device on {v1} got {}",
                    describe(&other)
                ))
            }
        }
        match self.check_as(v2, Who::Regular).await? {
            CheckResponse::NoUpdate => Ok(format!(
                "after approve: {v1} -> offered {v2}; on {v2} -> downloads=0"
            )),
            other => fail(format!(
                "after approving {v2}, a device on it got {}",
                describe(&other)
            )),
        }
    }

    pub(super) async fn restore_transition(&mut self) -> Verdict {
        let [v1, v2, _] = self.advance(Stage::Restored).await?;
        match self.check_as(v2, Who::Regular).await? {
            CheckResponse::Update(o) if o.version == v1 && o.status != OfferStatus::Pending => {
                Ok(format!(
                    "after restore: a device on {v2} is offered {v1} ({})",
                    o.status.as_str()
                ))
            }
            other => fail(format!(
                "after restore, a device on {v2} should be offered the restore version {v1}, \
                 got {}",
                describe(&other)
            )),
        }
    }

    pub(super) async fn reset_transition(&mut self) -> Verdict {
        let [v1, _, v3] = self.advance(Stage::V3Pending).await?;
        match self.check_as(v1, Who::Test).await? {
            CheckResponse::Update(o) if o.version == v3 && o.status == OfferStatus::Pending => {}
            other => {
                return fail(format!(
                    "before reset, with {v3} pending, the test device on {v1} got {}",
                    describe(&other)
                ))
            }
        }
        self.advance(Stage::Reset).await?;
        match self.check_as(v1, Who::Test).await? {
            CheckResponse::Update(o) if o.version == v3 => fail(format!(
                "after reset, the test device is still offered the cancelled {v3}"
            )),
            other => Ok(format!(
                "before reset the test device got {v3} (pending); after: {}",
                describe(&other)
            )),
        }
    }
}
