// Tribune's own addition to the Go api package's tests (copied in by `cargo xtask
// compat go`; not part of the upstream suite): the Go client's api.Lock and Tribune's
// Rust lock (`consul lock`, which is `tribune` on PATH, built on the tribune-client
// Lock) contend for the same lock key. Inside the lock each side checks a marker key is
// empty, claims it, checks it is still its own a few times, and deletes it: if the two
// were ever inside at once, one of them would see the other's mark.

package api

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestAPI_LockInteropTribuneRust(t *testing.T) {
	t.Parallel()
	c, s := makeClient(t)
	defer s.Stop()
	s.WaitForSerfCheck(t)

	const prefix = "interop"
	const marker = prefix + "/inside"
	const rounds = 15
	kv := c.KV()
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...interface{}) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}

	// The Go side keeps contending until the Rust side has finished its rounds, so
	// the two overlap for the whole run whatever their relative speeds.
	var rustDone atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < rounds || !rustDone.Load(); i++ {
			lock, err := c.LockOpts(&LockOptions{Key: prefix + "/.lock", SessionTTL: "10s"})
			if err != nil {
				fail("go: LockOpts: %v", err)
				return
			}
			if _, err := lock.Lock(nil); err != nil {
				fail("go: Lock: %v", err)
				return
			}
			if p, _, err := kv.Get(marker, nil); err != nil {
				fail("go: get: %v", err)
			} else if p != nil {
				fail("go entered while %q was inside", p.Value)
			}
			if _, err := kv.Put(&KVPair{Key: marker, Value: []byte("go")}, nil); err != nil {
				fail("go: put: %v", err)
			}
			// Stay inside for a while (KV round trips, not sleeps) so that a broken
			// exclusion has time to show.
			for j := 0; j < 20; j++ {
				if p, _, err := kv.Get(marker, nil); err != nil || p == nil || string(p.Value) != "go" {
					fail("go: marker changed while holding the lock: %v %v", p, err)
				}
			}
			if _, err := kv.Delete(marker, nil); err != nil {
				fail("go: delete: %v", err)
			}
			if err := lock.Unlock(); err != nil {
				fail("go: Unlock: %v", err)
			}
			if err := lock.Destroy(); err != nil && err != ErrLockInUse {
				fail("go: Destroy: %v", err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		defer rustDone.Store(true)
		addr := "-http-addr=" + s.HTTPAddr
		child := strings.Join([]string{
			`v=$(consul kv get ` + addr + ` ` + marker + ` 2>/dev/null)`,
			`if [ -n "$v" ]; then echo "rust entered while $v was inside" >&2; exit 42; fi`,
			`consul kv put ` + addr + ` ` + marker + ` rust >/dev/null || exit 43`,
			`for j in 1 2 3; do [ "$(consul kv get ` + addr + ` ` + marker + `)" = rust ] || { echo "rust: marker changed" >&2; exit 44; }; done`,
			`consul kv delete ` + addr + ` ` + marker + ` >/dev/null || exit 45`,
		}, "\n")
		for i := 0; i < rounds; i++ {
			cmd := exec.Command("consul", "lock", addr, "-child-exit-code", prefix, child)
			out, err := cmd.CombinedOutput()
			if err != nil {
				fail("rust: consul lock round %d: %v: %s", i, err, out)
				return
			}
		}
	}()
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
}
