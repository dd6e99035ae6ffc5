//! A scripted conversation, sans-I/O: which step the call is on, when it is
//! over, and what each step saw. The media session feeds it the far end's
//! turns as the live end-of-turn rule closes them, whether the far end is
//! speaking, and the time; it answers with what to send next (a clip, DTMF
//! digits, nothing) and when it next needs the time. It never touches audio
//! or sockets: the session encodes and paces, this decides.
//!
//! A step that misses its deadline ends the script (later steps are "not
//! reached") and the call hangs up: a conversation that went wrong does not
//! go on as if it had not.

use std::time::Duration;

use crate::audio::turns::Turn;
use crate::time::CallTime;

/// A conversation ready to run: its steps and the audio they say.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub steps: Vec<ScriptStep>,
    /// What `Say`/`BargeIn` steps say, by index.
    pub clips: Vec<Clip>,
    /// Silence that ends the far end's turn.
    pub end_of_turn: Duration,
    /// Hang up when the last step is done (a conversation) rather than at
    /// the call's hang-up time (`--play`, which only says one clip).
    pub hang_up_at_end: bool,
}

/// Audio we say, mono at 16 kHz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// How reports name it: the WAV's file name or the quoted text.
    pub label: String,
    pub pcm_16k: Vec<i16>,
    /// Where the clip's speech starts and ends (its leading and trailing
    /// silence not counted), found once when the clip is prepared rather
    /// than in every call that says it.
    pub speech: (Duration, Duration),
}

impl Clip {
    pub fn new(label: String, pcm_16k: Vec<i16>) -> Clip {
        let length = crate::audio::recording::duration_of(pcm_16k.len(), crate::audio::vad::VAD_SAMPLE_RATE);
        let found = crate::audio::vad::detect_speech(&pcm_16k, crate::audio::vad::VadConfig::default());
        let start = found.first().map_or(Duration::ZERO, |seg| seg.start);
        let end = found.last().map_or(length, |seg| seg.end);
        Clip { label, pcm_16k, speech: (start, end) }
    }
}

/// One step of a conversation, ready to run (clips decoded).
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptStep {
    /// Wait until the far end takes a turn and finishes it; the turn must
    /// start within `within` of the step starting.
    AgentTurn { within: Duration },
    /// Say a clip (index into the script's clips).
    Say { clip: usize },
    /// Send these DTMF keys.
    Dtmf { digits: String },
    /// Do nothing for this long.
    Wait(Duration),
    /// Say nothing for this long; the far end should not speak either
    /// (checked after the call).
    Silence(Duration),
    /// Wait until the far end has been talking for `after` (it must start
    /// within `within` of the step starting), then say the clip over it.
    /// Whether it stopped, and how fast, is checked after the call.
    BargeIn { clip: usize, after: Duration, within: Duration },
    /// End the call now.
    HangUp,
}

/// What happened at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub started: CallTime,
    pub ended: Option<CallTime>,
    pub outcome: StepOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// Still running when the call ended.
    Running,
    /// The step did what it waits for. For an agent turn, the turn.
    Done { turn: Option<Turn> },
    /// Its deadline passed first.
    TimedOut,
}

/// What the session must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptAction {
    /// Start sending clip `n` with the next frame.
    Say(usize),
    /// Start sending these keys.
    Dtmf(String),
    /// The script is over (or a step failed): hang up.
    HangUp,
}

/// The far end as the session sees it right now.
#[derive(Debug, Clone, Copy, Default)]
pub struct FarEnd {
    /// When its current speech started, if it is speaking.
    pub speaking_since: Option<CallTime>,
    /// The turn it is in (started, not yet closed by the end-of-turn rule).
    pub open_turn: Option<Turn>,
}

#[derive(Debug, Clone)]
pub struct ScriptRunner {
    steps: Vec<ScriptStep>,
    records: Vec<StepRecord>,
    /// Index of the current step (== steps.len() when all are done).
    current: usize,
    /// The current step's action was issued and is under way (sending).
    sending: bool,
    /// The script asked to hang up (after its last step, or a failed one).
    hung_up: bool,
    /// Hang up when the last step is done.
    hang_up_at_end: bool,
}

impl ScriptRunner {
    pub fn new(steps: Vec<ScriptStep>, hang_up_at_end: bool) -> ScriptRunner {
        ScriptRunner { steps, records: Vec::new(), current: 0, sending: false, hung_up: false, hang_up_at_end }
    }

    /// The step running now (== the number of steps once all are done).
    pub fn current_step(&self) -> usize {
        self.current
    }

    /// The steps and what happened at each one reached.
    pub fn into_parts(self) -> (Vec<ScriptStep>, Vec<StepRecord>) {
        (self.steps, self.records)
    }

    /// The call connected (or media started): the first step starts at `now`.
    pub fn start(&mut self, now: CallTime) -> Vec<ScriptAction> {
        if self.records.is_empty() && !self.steps.is_empty() {
            self.records.push(StepRecord { started: now, ended: None, outcome: StepOutcome::Running });
        }
        self.advance(now, FarEnd::default(), None)
    }

    /// The far end finished a turn (the live end-of-turn rule closed it).
    pub fn on_turn_closed(&mut self, turn: Turn, now: CallTime, far: FarEnd) -> Vec<ScriptAction> {
        self.advance(now, far, Some(turn))
    }

    /// What the session started sending for the current step is all sent.
    pub fn on_sent(&mut self, now: CallTime, far: FarEnd) -> Vec<ScriptAction> {
        if self.sending {
            self.sending = false;
            self.finish_current(now, StepOutcome::Done { turn: None });
        }
        self.advance(now, far, None)
    }

    /// Time passed (call at [`ScriptRunner::next_deadline`] and whenever the
    /// far end starts speaking).
    pub fn on_time(&mut self, now: CallTime, far: FarEnd) -> Vec<ScriptAction> {
        self.advance(now, far, None)
    }

    /// When the runner next needs [`ScriptRunner::on_time`] without other input.
    pub fn next_deadline(&self) -> Option<CallTime> {
        let rec = self.records.get(self.current)?;
        match self.steps.get(self.current)? {
            ScriptStep::AgentTurn { within } => Some(rec.started + *within),
            ScriptStep::Wait(d) | ScriptStep::Silence(d) => Some(rec.started + *d),
            ScriptStep::BargeIn { within, .. } if !self.sending => Some(rec.started + *within),
            _ => None,
        }
    }

    /// True once the script has asked to hang up.
    pub fn is_over(&self) -> bool {
        self.hung_up
    }

    /// Every step's record; steps never reached have none.
    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }

    fn finish_current(&mut self, now: CallTime, outcome: StepOutcome) {
        let failed = outcome == StepOutcome::TimedOut;
        if let Some(rec) = self.records.get_mut(self.current) {
            rec.ended = Some(now);
            rec.outcome = outcome;
        }
        self.current += 1;
        // After a failed step the script is over: later steps get no record.
        if !failed && self.current < self.steps.len() {
            self.records.push(StepRecord { started: now, ended: None, outcome: StepOutcome::Running });
        }
    }

    fn hang_up(&mut self, actions: &mut Vec<ScriptAction>) {
        if !self.hung_up {
            self.hung_up = true;
            actions.push(ScriptAction::HangUp);
        }
    }

    /// Runs steps until one has to wait.
    fn advance(&mut self, now: CallTime, far: FarEnd, mut closed: Option<Turn>) -> Vec<ScriptAction> {
        let mut actions = Vec::new();
        while !self.hung_up && !self.sending {
            let Some(step) = self.steps.get(self.current).cloned() else {
                if self.hang_up_at_end && !self.records.is_empty() {
                    self.hang_up(&mut actions);
                }
                break;
            };
            let Some(started) = self.records.get(self.current).map(|r| r.started) else { break };
            match step {
                ScriptStep::AgentTurn { within } => {
                    // A turn that closed after the step started (or began
                    // before it and ended after: the far end was mid-turn).
                    if let Some(turn) = closed.take().filter(|t| t.end >= started) {
                        self.finish_current(now, StepOutcome::Done { turn: Some(turn) });
                    } else if far.open_turn.is_none() && far.speaking_since.is_none() && now >= started + within {
                        self.finish_current(now, StepOutcome::TimedOut);
                        self.hang_up(&mut actions);
                    } else {
                        break;
                    }
                }
                ScriptStep::Say { clip } => {
                    self.sending = true;
                    actions.push(ScriptAction::Say(clip));
                }
                ScriptStep::Dtmf { digits } => {
                    self.sending = true;
                    actions.push(ScriptAction::Dtmf(digits));
                }
                ScriptStep::Wait(d) | ScriptStep::Silence(d) => {
                    if now >= started + d {
                        self.finish_current(started + d, StepOutcome::Done { turn: None });
                    } else {
                        break;
                    }
                }
                ScriptStep::BargeIn { clip, after, within } => {
                    let talking_long_enough = far.speaking_since.is_some_and(|s| now >= s + after);
                    if talking_long_enough {
                        self.sending = true;
                        actions.push(ScriptAction::Say(clip));
                    } else if now >= started + within {
                        self.finish_current(now, StepOutcome::TimedOut);
                        self.hang_up(&mut actions);
                    } else {
                        break;
                    }
                }
                ScriptStep::HangUp => {
                    self.finish_current(now, StepOutcome::Done { turn: None });
                    self.hang_up(&mut actions);
                }
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::turns::Speaker;

    fn at(ms: u64) -> CallTime {
        CallTime::after(Duration::from_millis(ms))
    }
    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    fn turn(start: u64, end: u64) -> Turn {
        Turn { speaker: Speaker::FarEnd, start: at(start), end: at(end) }
    }
    const QUIET: FarEnd = FarEnd { speaking_since: None, open_turn: None };

    #[test]
    fn waits_run_on_time_and_the_end_hangs_up() {
        let mut r = ScriptRunner::new(vec![ScriptStep::Wait(ms(500)), ScriptStep::Silence(ms(300))], true);
        assert!(r.start(at(100)).is_empty());
        assert_eq!(r.next_deadline(), Some(at(600)));
        assert!(r.on_time(at(599), QUIET).is_empty());
        assert_eq!(r.on_time(at(950), QUIET), vec![ScriptAction::HangUp], "both steps were due by 950");
        assert_eq!(r.records()[1].started, at(600), "a wait ends at its time, not when noticed");
        assert!(r.is_over() && r.on_time(at(2000), QUIET).is_empty());
    }

    #[test]
    fn an_agent_turn_in_progress_at_its_deadline_is_waited_for() {
        let mut r =
            ScriptRunner::new(vec![ScriptStep::AgentTurn { within: ms(1000) }, ScriptStep::Say { clip: 0 }], true);
        r.start(at(0));
        let talking = FarEnd { speaking_since: Some(at(900)), open_turn: None };
        assert!(r.on_time(at(1500), talking).is_empty(), "started in time, still talking");
        assert_eq!(r.on_turn_closed(turn(900, 2000), at(3000), QUIET), vec![ScriptAction::Say(0)]);
        assert_eq!(r.records()[0].outcome, StepOutcome::Done { turn: Some(turn(900, 2000)) });
        assert_eq!(r.on_sent(at(4000), QUIET), vec![ScriptAction::HangUp]);
    }

    #[test]
    fn barge_in_talks_over_the_far_end_after_the_delay() {
        let step = ScriptStep::BargeIn { clip: 0, after: ms(1000), within: ms(5000) };
        let mut r = ScriptRunner::new(vec![step], true);
        r.start(at(0));
        assert!(r.on_time(at(2000), FarEnd { speaking_since: Some(at(1500)), open_turn: None }).is_empty());
        let long_enough = FarEnd { speaking_since: Some(at(1500)), open_turn: None };
        assert_eq!(r.on_time(at(2500), long_enough), vec![ScriptAction::Say(0)]);
        assert_eq!(r.on_sent(at(4000), QUIET), vec![ScriptAction::HangUp]);
    }

    #[test]
    fn a_missed_deadline_ends_the_script_and_later_steps_are_not_reached() {
        let steps = vec![ScriptStep::AgentTurn { within: ms(1000) }, ScriptStep::Dtmf { digits: "1".into() }];
        let mut r = ScriptRunner::new(steps, false);
        r.start(at(0));
        assert_eq!(r.on_time(at(1000), QUIET), vec![ScriptAction::HangUp], "a failed step hangs up even for --play");
        assert_eq!(r.records().len(), 1, "the DTMF step was never reached");
        assert_eq!(r.records()[0].outcome, StepOutcome::TimedOut);
    }
}
