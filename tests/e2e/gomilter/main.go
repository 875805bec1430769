// Command gomilter drives a milter with emersion/go-milter's client, an MTA-side milter
// implementation that is neither Sendmail's, Postfix's nor ours, and prints what the milter
// did as JSON. tests/e2e/test_go_milter_client.py builds it (Debian's golang-go and
// golang-github-emersion-go-milter-dev, offline, GOPATH mode) and runs the same scripts
// through spambridge and through milter-spamc.
//
// The script (JSON on stdin) lists SMTP connections, each with messages; every step goes
// to the milter as the library sends it, and the first answer other than continue ends the
// message, as an MTA would end the transaction. Output (JSON on stdout): per connection the
// negotiated masks, per message the answer of each step, the end-of-message edits and the
// final answer; a library error (a timeout, a closed connection) ends the connection and is
// reported as "error", which an MTA turns into its default action for the milter.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	milter "github.com/emersion/go-milter"
)

type Script struct {
	Network     string       `json:"network"`
	Address     string       `json:"address"`
	Actions     uint32       `json:"actions"`
	Protocol    uint32       `json:"protocol"`
	TimeoutMs   int          `json:"timeout_ms"`
	Connections []Connection `json:"connections"`
}

type Connection struct {
	Hostname string              `json:"hostname"`
	Family   string              `json:"family"`
	Port     uint16              `json:"port"`
	Address  string              `json:"address"`
	Helo     string              `json:"helo"`
	Macros   map[string][]string `json:"macros"` // stage letter -> name, value, name, value...
	Messages []Message           `json:"messages"`
}

type Message struct {
	Sender  string              `json:"sender"`
	Rcpts   []string            `json:"rcpts"`
	Headers [][2]string         `json:"headers"`
	Body    string              `json:"body"`
	Chunk   int                 `json:"chunk"` // body chunk size; 0: one chunk
	Macros  map[string][]string `json:"macros"`
}

type Edit struct {
	Kind  string `json:"kind"`
	Index uint32 `json:"index,omitempty"`
	Name  string `json:"name,omitempty"`
	Value string `json:"value"`
}

type MessageResult struct {
	Steps []string `json:"steps"` // "stage answer"
	Edits []Edit   `json:"edits"`
	Final string   `json:"final"`
}

type ConnectionResult struct {
	Actions  uint32          `json:"actions"`
	Protocol uint32          `json:"protocol"`
	Steps    []string        `json:"steps"`
	Messages []MessageResult `json:"messages"`
	Error    string          `json:"error,omitempty"`
}

func describe(act *milter.Action) string {
	switch act.Code {
	case milter.ActContinue:
		return "continue"
	case milter.ActAccept:
		return "accept"
	case milter.ActReject:
		return "reject"
	case milter.ActTempFail:
		return "tempfail"
	case milter.ActDiscard:
		return "discard"
	case milter.ActSkip:
		return "skip"
	case milter.ActReplyCode:
		return fmt.Sprintf("reply %d %s", act.SMTPCode, act.SMTPText)
	}
	return fmt.Sprintf("code %q", rune(act.Code))
}

func edit(m milter.ModifyAction) Edit {
	switch m.Code {
	case milter.ActAddHeader:
		return Edit{Kind: "addheader", Name: m.HeaderName, Value: m.HeaderValue}
	case milter.ActInsertHeader:
		return Edit{Kind: "insertheader", Index: m.HeaderIndex, Name: m.HeaderName, Value: m.HeaderValue}
	case milter.ActChangeHeader:
		return Edit{Kind: "changeheader", Index: m.HeaderIndex, Name: m.HeaderName, Value: m.HeaderValue}
	case milter.ActAddRcpt:
		return Edit{Kind: "addrcpt", Value: m.Rcpt}
	case milter.ActDelRcpt:
		return Edit{Kind: "delrcpt", Value: m.Rcpt}
	case milter.ActQuarantine:
		return Edit{Kind: "quarantine", Value: m.Reason}
	case milter.ActReplBody:
		return Edit{Kind: "replbody", Value: string(m.Body)}
	case milter.ActChangeFrom:
		return Edit{Kind: "changefrom", Value: m.From}
	}
	return Edit{Kind: fmt.Sprintf("code %q", rune(m.Code))}
}

// macros sends the macros of one stage, if the script has any, in name order.
func macros(s *milter.ClientSession, stage string, table map[string][]string) error {
	kv, ok := table[stage]
	if !ok || len(kv) == 0 {
		return nil
	}
	return s.Macros(milter.Code(stage[0]), kv...)
}

// runMessage runs one transaction; an error means the connection can no longer be used.
func runMessage(s *milter.ClientSession, m Message, res *MessageResult) error {
	step := func(stage string, act *milter.Action, err error) (bool, error) {
		if err != nil {
			return true, err
		}
		answer := describe(act)
		res.Steps = append(res.Steps, stage+" "+answer)
		if act.Code != milter.ActContinue {
			res.Final = answer
			return true, nil
		}
		return false, nil
	}
	if err := macros(s, "M", m.Macros); err != nil {
		return err
	}
	act, err := s.Mail(m.Sender, nil)
	if stop, err := step("mail", act, err); stop {
		return err
	}
	for _, rcpt := range m.Rcpts {
		if err := macros(s, "R", m.Macros); err != nil {
			return err
		}
		act, err := s.Rcpt(rcpt, nil)
		if stop, err := step("rcpt", act, err); stop {
			return err
		}
	}
	for _, h := range m.Headers {
		act, err := s.HeaderField(h[0], h[1])
		if stop, err := step("header", act, err); stop {
			return err
		}
	}
	if err := macros(s, "N", m.Macros); err != nil {
		return err
	}
	act, err = s.HeaderEnd()
	if stop, err := step("eoh", act, err); stop {
		return err
	}
	body := []byte(m.Body)
	size := m.Chunk
	if size <= 0 || size > milter.MaxBodyChunk {
		size = milter.MaxBodyChunk
	}
	for start := 0; start < len(body); start += size {
		end := start + size
		if end > len(body) {
			end = len(body)
		}
		act, err := s.BodyChunk(body[start:end])
		if err != nil {
			return err
		}
		answer := describe(act)
		res.Steps = append(res.Steps, "body "+answer)
		if act.Code == milter.ActSkip {
			break
		}
		if act.Code != milter.ActContinue {
			res.Final = answer
			return nil
		}
	}
	if err := macros(s, "E", m.Macros); err != nil {
		return err
	}
	mods, act, err := s.End()
	if err != nil {
		return err
	}
	res.Edits = []Edit{}
	for _, m := range mods {
		res.Edits = append(res.Edits, edit(m))
	}
	res.Final = describe(act)
	res.Steps = append(res.Steps, "eom "+res.Final)
	return nil
}

func runConnection(client *milter.Client, c Connection) ConnectionResult {
	res := ConnectionResult{Steps: []string{}, Messages: []MessageResult{}}
	s, err := client.Session()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer s.Close()
	res.Actions, res.Protocol = uint32(s.ActionOpts), uint32(s.ProtocolOpts)
	family := milter.ProtoFamily(c.Family[0])
	if err := macros(s, "C", c.Macros); err != nil {
		res.Error = err.Error()
		return res
	}
	act, err := s.Conn(c.Hostname, family, c.Port, c.Address)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Steps = append(res.Steps, "connect "+describe(act))
	if act.Code != milter.ActContinue {
		return res
	}
	if err := macros(s, "H", c.Macros); err != nil {
		res.Error = err.Error()
		return res
	}
	act, err = s.Helo(c.Helo)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Steps = append(res.Steps, "helo "+describe(act))
	if act.Code != milter.ActContinue {
		return res
	}
	for _, m := range c.Messages {
		mres := MessageResult{Steps: []string{}, Edits: []Edit{}}
		err := runMessage(s, m, &mres)
		if err != nil {
			mres.Final = "error"
			res.Messages = append(res.Messages, mres)
			res.Error = err.Error()
			return res
		}
		res.Messages = append(res.Messages, mres)
	}
	return res
}

func main() {
	var script Script
	if err := json.NewDecoder(os.Stdin).Decode(&script); err != nil {
		fmt.Fprintln(os.Stderr, "gomilter: bad script:", err)
		os.Exit(2)
	}
	timeout := time.Duration(script.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	client := milter.NewClientWithOptions(script.Network, script.Address, milter.ClientOptions{
		Dialer:       &net.Dialer{Timeout: timeout},
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		ActionMask:   milter.OptAction(script.Actions),
		ProtocolMask: milter.OptProtocol(script.Protocol),
	})
	results := []ConnectionResult{}
	for _, c := range script.Connections {
		results = append(results, runConnection(client, c))
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", " ")
	if err := out.Encode(map[string]interface{}{"connections": results}); err != nil {
		os.Exit(1)
	}
}
