// A CSI driver that keeps volumes as folders of a host directory, with snapshots: stashlet's local node
// runs it under the real CSI sidecars (external-provisioner, csi-snapshotter), the snapshot controller
// and the kubelet's CSI volume plugin.
//
// It does what the kubernetes-csi hostpath driver does for one node, and registers itself with the
// kubelet (the node-driver-registrar's part). Every volume is a folder, volumes/<id>, with its record
// volumes/<id>.json; every snapshot is a gzipped tar of a volume's folder, snapshots/<id>.tar.gz, with
// its record snapshots/<id>.json. A record is written after its data, so a record always means the data
// is whole, and the state outlives the driver's container. An id is the name the sidecar asked for
// (pvc-<uid>, snapshot-<uid>), which makes every create idempotent.
package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	registration "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

var version = "dev"

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

type volumeRecord struct {
	Name     string `json:"name"`
	Capacity int64  `json:"capacity"`
	// FromSnapshot is the snapshot the volume was made from, if any.
	FromSnapshot string `json:"fromSnapshot,omitempty"`
}

type snapshotRecord struct {
	Name     string    `json:"name"`
	Source   string    `json:"sourceVolumeId"`
	Size     int64     `json:"sizeBytes"`
	Creation time.Time `json:"creationTime"`
}

type driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer
	registration.UnimplementedRegistrationServer

	name          string
	nodeID        string
	dataDir       string
	kubeletSocket string
	mu            sync.Mutex
}

func main() {
	d := &driver{}
	endpoint := flag.String("endpoint", "/csi/csi.sock", "the CSI socket this driver serves")
	registrationSocket := flag.String("registration-socket", "", "the socket in the kubelet's plugins_registry folder (none: no registration)")
	flag.StringVar(&d.name, "drivername", "", "the CSI driver's name")
	flag.StringVar(&d.nodeID, "nodeid", "", "the node's name")
	flag.StringVar(&d.dataDir, "datadir", "/csi-data-dir", "where volumes and snapshots are kept")
	flag.StringVar(&d.kubeletSocket, "kubelet-endpoint", "", "the CSI socket's path as the kubelet sees it")
	flag.Parse()
	if d.name == "" || d.nodeID == "" {
		log.Fatal("--drivername and --nodeid are required")
	}
	for _, folder := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(d.dataDir, folder), 0o755); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("%s %s: node %s, data in %s", d.name, version, d.nodeID, d.dataDir)

	servers := []*grpc.Server{serve(*endpoint, func(s *grpc.Server) {
		csi.RegisterIdentityServer(s, d)
		csi.RegisterControllerServer(s, d)
		csi.RegisterNodeServer(s, d)
	})}
	if *registrationSocket != "" {
		if d.kubeletSocket == "" {
			log.Fatal("--kubelet-endpoint is required with --registration-socket")
		}
		servers = append(servers, serve(*registrationSocket, func(s *grpc.Server) {
			registration.RegisterRegistrationServer(s, d)
		}))
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	log.Printf("stopping on %v", <-stop)
	for _, s := range servers {
		s.Stop()
	}
	// The kubelet deregisters the driver once its registration socket is gone.
	for _, path := range []string{*registrationSocket, *endpoint} {
		if path != "" {
			_ = os.Remove(path)
		}
	}
}

// serve listens on a unix socket (replacing a stale one) and serves gRPC there in the background.
func serve(path string, register func(*grpc.Server)) *grpc.Server {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Fatal(err)
	}
	listener, err := net.Listen("unix", path)
	if err != nil {
		log.Fatal(err)
	}
	server := grpc.NewServer(grpc.UnaryInterceptor(logCall))
	register(server)
	go func() {
		if err := server.Serve(listener); err != nil {
			log.Fatalf("serving %s: %v", path, err)
		}
	}()
	log.Printf("serving on %s", path)
	return server
}

func logCall(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	reply, err := handler(ctx, req)
	if err != nil {
		log.Printf("%s %v: %v", info.FullMethod, req, err)
	} else if !strings.HasSuffix(info.FullMethod, "/Probe") {
		log.Printf("%s %v: ok", info.FullMethod, req)
	}
	return reply, err
}

// --- kubelet plugin registration --------------------------------------------------------------------

func (d *driver) GetInfo(context.Context, *registration.InfoRequest) (*registration.PluginInfo, error) {
	return &registration.PluginInfo{
		Type:              registration.CSIPlugin,
		Name:              d.name,
		Endpoint:          d.kubeletSocket,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (d *driver) NotifyRegistrationStatus(_ context.Context, s *registration.RegistrationStatus) (*registration.RegistrationStatusResponse, error) {
	if !s.PluginRegistered {
		// As the node-driver-registrar does: exit, so the failure shows as a restarting container.
		log.Fatalf("the kubelet refused the registration: %s", s.Error)
	}
	log.Printf("registered with the kubelet")
	return &registration.RegistrationStatusResponse{}, nil
}

// --- identity ---------------------------------------------------------------------------------------

func (d *driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.name, VendorVersion: version}, nil
}

func (d *driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{
		Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
			Type: csi.PluginCapability_Service_CONTROLLER_SERVICE,
		}},
	}}}, nil
}

func (d *driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

// --- controller -------------------------------------------------------------------------------------

func (d *driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	id := req.GetName()
	if err := checkID("name", id); err != nil {
		return nil, err
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	capacity := req.GetCapacityRange().GetRequiredBytes()
	if limit := req.GetCapacityRange().GetLimitBytes(); limit > 0 && capacity > limit {
		return nil, status.Errorf(codes.InvalidArgument, "required bytes %d exceed the limit %d", capacity, limit)
	}
	source := req.GetVolumeContentSource()
	fromSnapshot := ""
	if source != nil {
		if source.GetSnapshot() == nil {
			return nil, status.Error(codes.InvalidArgument, "only snapshots can be a volume's content source (no cloning)")
		}
		fromSnapshot = source.GetSnapshot().GetSnapshotId()
	}
	d.mu.Lock()
	defer d.mu.Unlock()

	var existing volumeRecord
	switch err := readRecord(d.volumeRecord(id), &existing); {
	case err == nil:
		if existing.Capacity < capacity || existing.FromSnapshot != fromSnapshot {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with another size or source", id)
		}
		return volumeResponse(id, existing.Capacity, source), nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, status.Error(codes.Internal, err.Error())
	}

	folder := d.volumeDir(id)
	if err := os.RemoveAll(folder); err != nil { // what a failed attempt left
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.Mkdir(folder, 0o777); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.Chmod(folder, 0o777); err != nil { // past the umask: any pod user may write
		return nil, status.Error(codes.Internal, err.Error())
	}
	if fromSnapshot != "" {
		if err := d.restoreSnapshot(fromSnapshot, folder); err != nil {
			_ = os.RemoveAll(folder)
			return nil, err
		}
	}
	if err := writeRecord(d.volumeRecord(id), volumeRecord{Name: id, Capacity: capacity, FromSnapshot: fromSnapshot}); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return volumeResponse(id, capacity, source), nil
}

func volumeResponse(id string, capacity int64, source *csi.VolumeContentSource) *csi.CreateVolumeResponse {
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{VolumeId: id, CapacityBytes: capacity, ContentSource: source}}
}

func (d *driver) restoreSnapshot(snapshotID, folder string) error {
	var snapshot snapshotRecord
	if err := readRecord(d.snapshotRecord(snapshotID), &snapshot); errors.Is(err, fs.ErrNotExist) {
		return status.Errorf(codes.NotFound, "snapshot %s not found", snapshotID)
	} else if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	if err := extract(d.snapshotArchive(snapshotID), folder); err != nil {
		return status.Errorf(codes.Internal, "restoring snapshot %s: %v", snapshotID, err)
	}
	return nil
}

func (d *driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if err := checkID("volume id", id); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// The record first: once it is gone the volume is, even if removing the folder is cut short.
	if err := os.Remove(d.volumeRecord(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.RemoveAll(d.volumeDir(id)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (d *driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if err := checkID("volume id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	if _, err := os.Stat(d.volumeRecord(req.GetVolumeId())); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetVolumeId())
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

func (d *driver) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	id, source := req.GetName(), req.GetSourceVolumeId()
	if err := checkID("name", id); err != nil {
		return nil, err
	}
	if err := checkID("source volume id", source); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()

	var existing snapshotRecord
	switch err := readRecord(d.snapshotRecord(id), &existing); {
	case err == nil:
		if existing.Source != source {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists of volume %s", id, existing.Source)
		}
		return &csi.CreateSnapshotResponse{Snapshot: existing.csi()}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, status.Error(codes.Internal, err.Error())
	}
	var volume volumeRecord
	if err := readRecord(d.volumeRecord(source), &volume); errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.NotFound, "source volume %s not found", source)
	} else if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := archiveFolder(d.volumeDir(source), d.snapshotArchive(id)); err != nil {
		return nil, status.Errorf(codes.Internal, "archiving volume %s: %v", source, err)
	}
	// The size a volume made from it needs: its source's (as the kubernetes-csi hostpath driver says).
	record := snapshotRecord{Name: id, Source: source, Size: volume.Capacity, Creation: time.Now().UTC()}
	if err := writeRecord(d.snapshotRecord(id), record); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.CreateSnapshotResponse{Snapshot: record.csi()}, nil
}

func (r snapshotRecord) csi() *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     r.Name,
		SourceVolumeId: r.Source,
		SizeBytes:      r.Size,
		CreationTime:   timestamppb.New(r.Creation),
		ReadyToUse:     true,
	}
}

func (d *driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if err := checkID("snapshot id", id); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, path := range []string{d.snapshotRecord(id), d.snapshotArchive(id)} {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (d *driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	records, err := filepath.Glob(filepath.Join(d.dataDir, "snapshots", "*.json"))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	sort.Strings(records)
	var entries []*csi.ListSnapshotsResponse_Entry
	for _, path := range records {
		var record snapshotRecord
		if err := readRecord(path, &record); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if (req.GetSnapshotId() != "" && record.Name != req.GetSnapshotId()) ||
			(req.GetSourceVolumeId() != "" && record.Source != req.GetSourceVolumeId()) {
			continue
		}
		entries = append(entries, &csi.ListSnapshotsResponse_Entry{Snapshot: record.csi()})
	}
	start := 0
	if token := req.GetStartingToken(); token != "" {
		if start, err = strconv.Atoi(token); err != nil || start < 0 || start > len(entries) {
			return nil, status.Errorf(codes.Aborted, "invalid starting token %q", token)
		}
	}
	end, next := len(entries), ""
	if max := int(req.GetMaxEntries()); max > 0 && start+max < end {
		end, next = start+max, strconv.Itoa(start+max)
	}
	return &csi.ListSnapshotsResponse{Entries: entries[start:end], NextToken: next}, nil
}

// --- node -------------------------------------------------------------------------------------------

func (d *driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.nodeID}, nil
}

func (d *driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{}, nil
}

func (d *driver) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if err := checkID("volume id", id); err != nil {
		return nil, err
	}
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "target path missing")
	}
	if err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := os.Stat(d.volumeRecord(id)); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	}
	mounted, err := isMountPoint(target)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if mounted {
		return &csi.NodePublishVolumeResponse{}, nil
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := syscall.Mount(d.volumeDir(id), target, "", syscall.MS_BIND, ""); err != nil {
		return nil, status.Errorf(codes.Internal, "bind-mounting volume %s on %s: %v", id, target, err)
	}
	if req.GetReadonly() {
		flags := uintptr(syscall.MS_BIND | syscall.MS_REMOUNT | syscall.MS_RDONLY)
		if err := syscall.Mount("", target, "", flags, ""); err != nil {
			_ = syscall.Unmount(target, 0)
			return nil, status.Errorf(codes.Internal, "making %s read-only: %v", target, err)
		}
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

func (d *driver) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if err := checkID("volume id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "target path missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	mounted, err := isMountPoint(target)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if mounted {
		if err := syscall.Unmount(target, 0); err != nil {
			return nil, status.Errorf(codes.Internal, "unmounting %s: %v", target, err)
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// --- helpers ----------------------------------------------------------------------------------------

func (d *driver) volumeDir(id string) string { return filepath.Join(d.dataDir, "volumes", id) }
func (d *driver) volumeRecord(id string) string {
	return filepath.Join(d.dataDir, "volumes", id+".json")
}
func (d *driver) snapshotArchive(id string) string {
	return filepath.Join(d.dataDir, "snapshots", id+".tar.gz")
}
func (d *driver) snapshotRecord(id string) string {
	return filepath.Join(d.dataDir, "snapshots", id+".json")
}

func checkID(what, id string) error {
	if !validID.MatchString(id) {
		return status.Errorf(codes.InvalidArgument, "%s %q is empty or not of the form %s", what, id, validID)
	}
	return nil
}

func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	for _, c := range caps {
		if c == nil || c.GetMount() == nil {
			return status.Error(codes.InvalidArgument, "only filesystem (mount) volumes are supported, not block")
		}
		if c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_UNKNOWN {
			return status.Error(codes.InvalidArgument, "access mode missing")
		}
	}
	return nil
}

func readRecord(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, into)
}

// writeRecord writes JSON next to its final name, syncs it and renames it into place.
func writeRecord(path string, record any) error {
	data, err := json.Marshal(record)
	if err != nil {
		return err
	}
	partial := path + ".partial"
	if err := os.WriteFile(partial, data, 0o644); err != nil {
		return err
	}
	return syncAndRename(partial, path)
}

func syncAndRename(partial, path string) error {
	f, err := os.Open(partial)
	if err != nil {
		return err
	}
	err = f.Sync()
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	return os.Rename(partial, path)
}

// isMountPoint says whether path is a mount point in this mount namespace (/proc/self/mountinfo).
func isMountPoint(path string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	clean := filepath.Clean(path)
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) > 4 && unescapeMountPath(fields[4]) == clean {
			return true, nil
		}
	}
	return false, scanner.Err()
}

func unescapeMountPath(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// archiveFolder writes a gzipped tar of folder's content to path (atomically).
func archiveFolder(folder, path string) error {
	partial := path + ".partial"
	out, err := os.Create(partial)
	if err != nil {
		return err
	}
	zipped := gzip.NewWriter(out)
	archive := tar.NewWriter(zipped)
	walkErr := filepath.WalkDir(folder, func(file string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if file == folder {
			return nil
		}
		return addToArchive(archive, folder, file, entry)
	})
	for _, closer := range []io.Closer{archive, zipped, out} {
		if err := closer.Close(); walkErr == nil {
			walkErr = err
		}
	}
	if walkErr != nil {
		_ = os.Remove(partial)
		return walkErr
	}
	return syncAndRename(partial, path)
}

func addToArchive(archive *tar.Writer, folder, file string, entry fs.DirEntry) error {
	info, err := entry.Info()
	if err != nil {
		return err
	}
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(file); err != nil {
			return err
		}
	}
	header, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	relative, err := filepath.Rel(folder, file)
	if err != nil {
		return err
	}
	header.Name = filepath.ToSlash(relative)
	header.Uname, header.Gname = "", ""
	if err := archive.WriteHeader(header); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	in, err := os.Open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = io.Copy(archive, in)
	return err
}

// extract unpacks a gzipped tar made by archiveFolder into folder, keeping modes, owners and times.
func extract(path, folder string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	zipped, err := gzip.NewReader(in)
	if err != nil {
		return err
	}
	archive := tar.NewReader(zipped)
	type dirTime struct {
		path string
		time time.Time
	}
	var dirs []dirTime
	for {
		header, err := archive.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(filepath.FromSlash(header.Name))
		if name == "." || filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("unsafe path %q in %s", header.Name, path)
		}
		target := filepath.Join(folder, name)
		mode := fs.FileMode(header.Mode).Perm() | fs.FileMode(header.Mode)&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		switch header.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirTime{target, header.ModTime})
		case tar.TypeReg:
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, archive)
			if closeErr := out.Close(); err == nil {
				err = closeErr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(header.Linkname, target); err != nil {
				return err
			}
		default:
			continue // devices, fifos and sockets are not kept
		}
		if err := os.Lchown(target, header.Uid, header.Gid); err != nil {
			return err
		}
		if header.Typeflag != tar.TypeSymlink {
			if err := os.Chmod(target, mode); err != nil {
				return err
			}
			if err := os.Chtimes(target, header.ModTime, header.ModTime); err != nil {
				return err
			}
		}
	}
	// Folder times last: creating their entries changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i].path, dirs[i].time, dirs[i].time); err != nil {
			return err
		}
	}
	return nil
}
