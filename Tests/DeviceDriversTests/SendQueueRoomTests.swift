import DeviceDrivers
import Synchronization
import Testing

/// A queue pair's send-queue slots: posting beyond them waits for a slot instead of failing.
struct SendQueueRoomTests {
    final class Log: Sendable {
        let posted = Mutex<[Int]>([])
        func post(_ i: Int) { posted.withLock { $0.append(i) } }
        var all: [Int] { posted.withLock { $0 } }
    }

    @Test func postsBeyondTheSlotsWaitAndGoInOrderAsSlotsFree() {
        let room = SendQueueRoom(slots: 2)
        let log = Log()
        for i in 0..<5 { room.whenFree { log.post(i) } }
        #expect(log.all == [0, 1], "two slots: two posts at once, the rest wait")
        room.release()
        #expect(log.all == [0, 1, 2])
        room.release()
        room.release()
        #expect(log.all == [0, 1, 2, 3, 4], "each freed slot goes to the longest waiter")
        // 3 and 4 complete: both slots are free again, and no more than two go at once.
        room.release()
        room.release()
        for i in 5..<8 { room.whenFree { log.post(i) } }
        #expect(log.all == [0, 1, 2, 3, 4, 5, 6])
    }
}
