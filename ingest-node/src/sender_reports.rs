//! RTCP sender reports for lip sync. The `webrtc` crate (0.21.1) ends
//! inbound RTCP in its interceptor chain; an interceptor must mark the
//! packets the application wants with `DeliverToApplication`. This one
//! marks compound packets that carry a sender report (RFC 3550 6.4.1), which
//! then reach the track readers as `OnRtcpPacket`.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::sender_report::SenderReport;

/// Where the tap sits in the chain (after the crate's own interceptors,
/// which read the same packets first).
pub const SLOT: usize = 14_000;

#[derive(Default)]
pub struct SenderReportTap {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for SenderReportTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && packets.iter().any(|p| p.as_any().is::<SenderReport>())
        {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for SenderReportTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// A sender report's clock pair for `ssrc`, if `packet` is one.
pub fn clock_of(packet: &dyn rtc::rtcp::Packet, ssrc: u32) -> Option<(u64, u32)> {
    let sr = packet.as_any().downcast_ref::<SenderReport>()?;
    (sr.ssrc == ssrc).then_some((sr.ntp_time, sr.rtp_time))
}
