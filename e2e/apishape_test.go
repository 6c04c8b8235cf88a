package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"
)

// uuidPattern is the form of AWS's tunnel ids: a version 4 UUID, lower case.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// parallel runs fn(i) for i in [0, n) on a few workers and returns the
// first error.
func parallel(n, workers int, fn func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// sdkTunnels is an aws-sdk-go (v1) tunnel client of s's admin account.
func (s *service) sdkTunnels(t *testing.T) *iotsecuretunneling.IoTSecureTunneling {
	t.Helper()
	ca, err := os.Open(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	sess, err := session.NewSessionWithOptions(session.Options{
		Config: aws.Config{
			Region:      aws.String("us-east-1"),
			Endpoint:    aws.String("https://" + s.addr),
			Credentials: credentials.NewSharedCredentials(filepath.Join(s.dir, "credentials"), "default"),
		},
		CustomCABundle: ca,
	})
	if err != nil {
		t.Fatal(err)
	}
	return iotsecuretunneling.New(sess)
}

// The usual clean-up loop over 250 tunnels, the pages listed with warren
// list-tunnels: list a page, close and delete each of its tunnels, ask for
// the next page with the nextToken from before the deletions. Every tunnel
// is deleted, newest first, and every id is a UUID.
func TestCleanupLoop250(t *testing.T) {
	s := startService(t, "--api-rate", "0")
	const n = 250
	// Opened through the Go SDK: 250 processes would only slow the test.
	api := s.sdkTunnels(t)
	ids := make([]string, n)
	err := parallel(n, 4, func(i int) error {
		out, err := api.OpenTunnel(&iotsecuretunneling.OpenTunnelInput{
			DestinationConfig: &iotsecuretunneling.DestinationConfig{Services: aws.StringSlice([]string{"SSH"})}})
		if err != nil {
			return fmt.Errorf("OpenTunnel: %w", err)
		}
		ids[i] = aws.StringValue(out.TunnelId)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	open := map[string]bool{}
	for _, id := range ids {
		if !uuidPattern.MatchString(id) {
			t.Fatalf("tunnel id %q is not a lower-case version 4 UUID", id)
		}
		open[id] = true
	}

	type listOut struct {
		TunnelSummaries []struct {
			TunnelID  string `json:"tunnelId"`
			CreatedAt string `json:"createdAt"`
		} `json:"tunnelSummaries"`
		NextToken string `json:"nextToken"`
	}
	pages, deleted := 0, 0
	token := ""
	for {
		args := []string{"list-tunnels", "--max-results", "100"}
		if token != "" {
			args = append(args, "--next-token", token)
		}
		var page listOut
		s.warren(t, &page, args...)
		pages++
		for i, sum := range page.TunnelSummaries {
			if !open[sum.TunnelID] {
				t.Fatalf("page %d lists %s, which is deleted or unknown", pages, sum.TunnelID)
			}
			if i > 0 && sum.CreatedAt > page.TunnelSummaries[i-1].CreatedAt {
				t.Fatalf("page %d is not newest first: %s after %s", pages, sum.CreatedAt, page.TunnelSummaries[i-1].CreatedAt)
			}
			delete(open, sum.TunnelID)
		}
		// The first of each page with warren close-tunnel --delete, the
		// rest through the SDK: a process each would only slow the test.
		if len(page.TunnelSummaries) > 0 {
			s.warren(t, nil, "close-tunnel", "--tunnel-id", page.TunnelSummaries[0].TunnelID, "--delete")
		}
		err := parallel(len(page.TunnelSummaries)-1, 4, func(i int) error {
			_, err := api.CloseTunnel(&iotsecuretunneling.CloseTunnelInput{
				TunnelId: aws.String(page.TunnelSummaries[i+1].TunnelID), Delete: aws.Bool(true)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		deleted += len(page.TunnelSummaries)
		if token = page.NextToken; token == "" {
			break
		}
	}
	if deleted != n || pages != 3 || len(open) != 0 {
		t.Fatalf("deleted %d tunnels in %d pages, %d never listed; want %d in 3", deleted, pages, len(open), n)
	}
	var rest listOut
	s.warren(t, &rest, "list-tunnels")
	if len(rest.TunnelSummaries) != 0 {
		t.Fatalf("%d tunnels left", len(rest.TunnelSummaries))
	}
}

// Tags on OpenTunnel and by ARN, with the admin commands and the AWS CLI
// reading them back.
func TestTagCommands(t *testing.T) {
	s := startService(t)
	var open openTunnelOut
	s.warren(t, &open, "open-tunnel", "--destination-config", "services=SSH", "--tags", "key=team,value=edge")
	type tagsOut struct {
		Tags []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"tags"`
	}
	tags := func(out tagsOut) string {
		var kv []string
		for _, tg := range out.Tags {
			kv = append(kv, tg.Key+"="+tg.Value)
		}
		return strings.Join(kv, ",")
	}
	s.warren(t, nil, "tag-resource", "--resource-arn", open.TunnelArn, "--tags", "key=team,value=ops", "Key=env,Value=lab")
	var got tagsOut
	s.warren(t, &got, "list-tags-for-resource", "--resource-arn", open.TunnelArn)
	if tags(got) != "team=ops,env=lab" {
		t.Fatalf("after tag-resource: %s", tags(got))
	}
	s.warren(t, nil, "untag-resource", "--resource-arn", open.TunnelArn, "--tag-keys", "team", "absent")
	s.warren(t, &got, "list-tags-for-resource", "--resource-arn", open.TunnelArn)
	if tags(got) != "env=lab" {
		t.Fatalf("after untag-resource: %s", tags(got))
	}
	for name, cli := range awsCLIs(t) {
		var viaCLI tagsOut
		s.aws(t, cli, &viaCLI, "iotsecuretunneling", "list-tags-for-resource", "--resource-arn", open.TunnelArn)
		if tags(viaCLI) != "env=lab" {
			t.Fatalf("AWS CLI %s reads tags %s", name, tags(viaCLI))
		}
	}
	// Input past the model's bounds is a ValidationException, with its name.
	stdout, stderr, err := s.run(bin.warren, "tag-resource", "--resource-arn", open.TunnelArn, "--tags", "key=a#b,value=x")
	if err == nil || !strings.Contains(stderr, "An error occurred (ValidationException) when calling the TagResource operation") || !strings.Contains(stderr, "a#b") {
		t.Fatalf("bad tag key: %v\n%s%s", err, stdout, stderr)
	}
}
