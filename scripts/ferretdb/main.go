// strata-ferretdb: FerretDB v1 (MongoDB wire protocol on PostgreSQL),
// embedded, for the tests (scripts/mongo-test-server builds and runs it).
// Built from this module rather than `go install .../cmd/ferretdb` because
// that one does not build from the module proxy.
//
//	strata-ferretdb -postgresql-url URL -listen-addr 127.0.0.1:PORT
//	    serve until SIGTERM or SIGINT
//	strata-ferretdb -probe 127.0.0.1:PORT
//	    send one `ping` (which FerretDB answers only when PostgreSQL works);
//	    exit 0 when it answers ok, 1 otherwise
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	pgURL := flag.String("postgresql-url", "", "PostgreSQL connection string")
	listen := flag.String("listen-addr", "", "TCP address to listen on (host:port)")
	probe := flag.String("probe", "", "ping the server at host:port and exit")
	level := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	if *probe != "" {
		if err := ping(*probe, 5*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "strata-ferretdb: probe %s: %v\n", *probe, err)
			os.Exit(1)
		}
		return
	}
	if *pgURL == "" || *listen == "" {
		fmt.Fprintln(os.Stderr, "usage: strata-ferretdb -postgresql-url URL -listen-addr HOST:PORT | -probe HOST:PORT")
		os.Exit(2)
	}

	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "strata-ferretdb: bad -log-level %q\n", *level)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	slog.SetDefault(logger)

	// FerretDB listens inside Run, not New: bind once here first so that a
	// taken port is a clear error and exit rather than a log line.
	probeLn, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata-ferretdb: cannot listen on %s: %v\n", *listen, err)
		os.Exit(3)
	}
	probeLn.Close()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Logger:        logger,
		Handler:       "postgresql",
		PostgreSQLURL: *pgURL,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata-ferretdb: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "strata-ferretdb: %v\n", err)
		os.Exit(1)
	}
}

// ping sends OP_MSG {ping: 1, $db: "admin"} and checks for ok: 1.
func ping(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}

	var doc bytes.Buffer
	doc.Write([]byte{0, 0, 0, 0})
	doc.WriteByte(0x10) // int32
	doc.WriteString("ping\x00")
	binary.Write(&doc, binary.LittleEndian, int32(1))
	doc.WriteByte(0x02) // string
	doc.WriteString("$db\x00")
	binary.Write(&doc, binary.LittleEndian, int32(len("admin")+1))
	doc.WriteString("admin\x00")
	doc.WriteByte(0)
	d := doc.Bytes()
	binary.LittleEndian.PutUint32(d, uint32(len(d)))

	var msg bytes.Buffer
	hdr := []int32{int32(16 + 4 + 1 + len(d)), 1, 0, 2013} // length, requestID, responseTo, OP_MSG
	binary.Write(&msg, binary.LittleEndian, hdr)
	binary.Write(&msg, binary.LittleEndian, uint32(0)) // flagBits
	msg.WriteByte(0)                                   // section kind 0: body
	msg.Write(d)
	if _, err := conn.Write(msg.Bytes()); err != nil {
		return err
	}

	var rh [16]byte
	if _, err := io.ReadFull(conn, rh[:]); err != nil {
		return err
	}
	n := int(binary.LittleEndian.Uint32(rh[0:4]))
	if n < 16+4+1+5 || n > 1<<20 {
		return fmt.Errorf("bad reply length %d", n)
	}
	body := make([]byte, n-16)
	if _, err := io.ReadFull(conn, body); err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(rh[12:16]) != 2013 || body[4] != 0 {
		return errors.New("unexpected reply format")
	}
	ok, err := okField(body[5:])
	if err != nil {
		return err
	}
	if ok != 1 {
		return fmt.Errorf("ping answered ok: %v (%q)", ok, body[5:])
	}
	return nil
}

// okField finds the top-level "ok" number in a BSON document.
func okField(d []byte) (float64, error) {
	if len(d) < 5 || int(binary.LittleEndian.Uint32(d)) > len(d) {
		return 0, errors.New("truncated reply document")
	}
	d = d[4:binary.LittleEndian.Uint32(d)]
	for len(d) > 1 {
		t := d[0]
		end := bytes.IndexByte(d[1:], 0)
		if end < 0 {
			break
		}
		name := string(d[1 : 1+end])
		v := d[2+end:]
		var size int
		switch t {
		case 0x01, 0x12, 0x09, 0x11: // double, int64, datetime, timestamp
			size = 8
		case 0x10:
			size = 4
		case 0x08:
			size = 1
		case 0x0A:
			size = 0
		case 0x02:
			if len(v) < 4 {
				return 0, errors.New("truncated reply document")
			}
			size = 4 + int(binary.LittleEndian.Uint32(v))
		case 0x03, 0x04:
			if len(v) < 4 {
				return 0, errors.New("truncated reply document")
			}
			size = int(binary.LittleEndian.Uint32(v))
		default:
			return 0, fmt.Errorf("unexpected BSON type 0x%x before ok", t)
		}
		if size > len(v) {
			return 0, errors.New("truncated reply document")
		}
		if name == "ok" {
			switch t {
			case 0x01:
				return math.Float64frombits(binary.LittleEndian.Uint64(v)), nil
			case 0x10:
				return float64(int32(binary.LittleEndian.Uint32(v))), nil
			case 0x12:
				return float64(int64(binary.LittleEndian.Uint64(v))), nil
			}
			return 0, errors.New("ok is not a number")
		}
		d = v[size:]
	}
	return 0, errors.New("no ok field in reply")
}
